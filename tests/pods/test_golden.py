"""Golden job scripts: the generated script and sbatch options for a table of pods, one per
feature, compared with the files under ``golden/`` (readable diffs of what a change does to the
contract with Slurm), and each one ``bash -n`` clean.

After an intended change, ``MOBIUS_UPDATE_GOLDEN=1 pytest tests/pods/test_golden.py`` rewrites
the files; review their diff like code.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mobius.models import Pod
from mobius.pods.env import PodRefs
from mobius.pods.script import render_job
from mobius.runtime import Apptainer, Podman
from mobius.runtime.base import Runtime

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MOBIUS_UPDATE_GOLDEN") == "1"


def _c(name: str = "main", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.36", **fields}


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (metadata extras, spec)
    "minimal": ({}, {"containers": [_c(command=["echo", "hi"])]}),
    "init-and-apps": (
        {},
        {
            "restartPolicy": "Always",
            "initContainers": [_c("setup", command=["sh", "-c", "echo ready"])],
            "containers": [_c("web", args=["httpd", "-f"]), _c("sidecar", command=["sleep", "1d"])],
        },
    ),
    "on-failure-with-grace": (
        {},
        {
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 45,
            "activeDeadlineSeconds": 3600,
            "containers": [_c(command=["./train"], workingDir="/work")],
        },
    ),
    "env-and-fields": (
        {"labels": {"app": "demo"}},
        {
            "containers": [
                _c(
                    command=["sh", "-c", "echo $(GREETING) $POD_IP"],
                    env=[
                        {"name": "GREETING", "value": "hello 'world'"},
                        {
                            "name": "POD_IP",
                            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                        },
                        {
                            "name": "NS",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        },
                        {
                            "name": "MODE",
                            "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}},
                        },
                    ],
                )
            ]
        },
    ),
    "resources-and-gpus": (
        {},
        {
            "initContainers": [
                _c("prep", command=["true"], resources={"requests": {"memory": "2Gi"}})
            ],
            "containers": [
                _c(
                    command=["./sim"],
                    resources={
                        "requests": {"cpu": "2500m", "memory": "1Gi"},
                        "limits": {"nvidia.com/gpu": "2"},
                    },
                )
            ],
        },
    ),
    "slurm-annotations": (
        {
            "annotations": {
                "slurm.mobius.io/partition": "gpu",
                "slurm.mobius.io/account": "proj42",
                "slurm.mobius.io/time": "2:00:00",
                "slurm.mobius.io/flags": "--mail-type=END --constraint='skylake&ib'",
            }
        },
        {"containers": [_c(command=["./job"])]},
    ),
    "mpi": (
        {"annotations": {"slurm.mobius.io/mpi": "srun --mpi=pmix", "slurm.mobius.io/ntasks": "8"}},
        {"containers": [_c("solver", command=["./solve"])]},
    ),
    "empty-dir": (
        {},
        {
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [
                _c(
                    command=["ls", "/scratch"],
                    volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
                )
            ],
        },
    ),
    "probes": (
        {},
        {
            "containers": [
                _c(
                    command=["httpd", "-f", "-p", "8080"],
                    ports=[{"name": "http", "containerPort": 8080}],
                    readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
                    livenessProbe={"exec": {"command": ["test", "-e", "/tmp/ok"]}},
                )
            ]
        },
    ),
    "host-network": ({}, {"hostNetwork": True, "containers": [_c(command=["hostname"])]}),
}

RUNTIMES: dict[str, Runtime] = {
    "podman": Podman(global_flags=("--log-level=error",)),
    "apptainer": Apptainer(global_flags=("--quiet",)),
}
REFS = PodRefs(config_maps={"cfg": {"mode": "fast"}})


def _pod(name: str) -> Pod:
    meta, spec = CASES[name]
    raw = {
        "metadata": {"name": name, "namespace": "default", "uid": f"0000-{name}", **meta},
        "spec": {"restartPolicy": "Never", **spec},
    }
    return msgspec.convert(raw, Pod)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_scripts(case: str, runtime: str, tmp_path: Path) -> None:
    job = render_job(
        _pod(case),
        pod_dir=f"/scratch/mobius/pods/0000-{case}",
        runtime=RUNTIMES[runtime],
        refs=REFS,
    )
    text = "# sbatch " + " ".join(job.sbatch_args) + "\n" + job.script
    path = GOLDEN / f"{case}.{runtime}.sh"
    if UPDATE:
        path.write_text(text)
    script = tmp_path / "job.sh"
    script.write_text(job.script)
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert path.exists(), f"{path} is missing: run with MOBIUS_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{path.name} changed: review, then MOBIUS_UPDATE_GOLDEN=1"
