"""What the submitter does when sbatch refuses: retry what may pass later, fail what cannot.

Slurm and the API server are fakes here (a refusal such as a QOS job limit cannot be produced
by the private cluster without accounting); the e2e tests cover real submissions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from mobius.errors import NotFound, SlurmCommandError
from mobius.models import Pod
from mobius.runtime import Podman
from mobius.slurm.jobs import SUBMITTED, JobSettings, submit_pod
from mobius.state import JobTable, PodPaths


class FakeKube:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []

    async def get(self, path: str, type: Any, **params: Any) -> Any:
        raise NotFound(404, "NotFound", path)

    async def create(self, path: str, body: Any) -> bytes:
        self.events.append(body)
        return b"{}"

    async def request(self, method: str, path: str, **kw: Any) -> bytes:
        self.patches.append(kw["body"])
        return b"{}"


class RefusingSlurm:
    def __init__(self, stderr: str, *, times: int) -> None:
        self.stderr, self.times, self.calls = stderr, times, 0

    async def sbatch_file(self, path: str, args: Any) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise SlurmCommandError(["sbatch"], 1, self.stderr)
        return "77"


def pod() -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
            "spec": {
                "restartPolicy": "Never",
                "enableServiceLinks": False,
                "containers": [{"name": "c", "image": "busybox"}],
            },
        },
        Pod,
    )


async def submit(
    slurm: RefusingSlurm, kube: FakeKube, jobs: JobTable, tmp_path: Path, retry: dict[str, float]
) -> None:
    await submit_pod(
        pod(),
        slurm=slurm,
        kube=kube,
        jobs=jobs,
        paths=PodPaths(tmp_path),  # type: ignore[arg-type]
        runtime=Podman(),
        settings=JobSettings(node_name="n"),
        retry=retry,
    )


async def test_limits_are_retried_and_reported_once(tmp_path: Path, autojump_clock: Any) -> None:
    slurm = RefusingSlurm("sbatch: error: QOSMaxSubmitJobPerUserLimit", times=3)
    kube, jobs, retry = FakeKube(), JobTable(), {}
    for _ in range(3):
        await submit(slurm, kube, jobs, tmp_path, retry)
        assert "u-1" not in jobs  # no job yet: serve_jobs will call again
    assert retry["u-1"] == 8.0  # 2, 4, 8: doubling back-off
    assert [e["reason"] for e in kube.events] == ["SlurmSubmitRetrying"]
    (condition,) = kube.patches[0]["status"]["conditions"]
    assert (condition["type"], condition["status"]) == (SUBMITTED, "False")
    assert "QOSMaxSubmitJobPerUserLimit" in condition["message"]
    await submit(slurm, kube, jobs, tmp_path, retry)
    assert jobs.get("u-1").job_id == "77"  # type: ignore[union-attr]
    assert "u-1" not in retry
    assert [e["reason"] for e in kube.events] == ["SlurmSubmitRetrying", "Submitted"]


@pytest.mark.parametrize(
    "stderr",
    [
        "sbatch: error: invalid partition specified: nope",
        "sbatch: error: Invalid qos specification",
    ],
)
async def test_what_cannot_pass_fails_the_pod(tmp_path: Path, stderr: str) -> None:
    kube, jobs = FakeKube(), JobTable()
    await submit(RefusingSlurm(stderr, times=1), kube, jobs, tmp_path, {})
    job = jobs.get("u-1")
    assert job is not None
    assert (job.job_id, job.reason) == ("", "SlurmSubmitFailed")
    assert stderr in job.error
    assert [e["reason"] for e in kube.events] == ["SlurmSubmitFailed"]
