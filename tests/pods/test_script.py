"""The job script generator: valid bash, Kubernetes semantics, and no pod field can inject shell.

The injection property is checked by running the generated script for real under bash with a
recording stand-in for the ``podman`` binary (podman itself is exercised by the e2e tests):
whatever the args and env values, podman must receive exactly them as separate arguments.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius.errors import InvalidPodSpec
from mobius.models import Pod
from mobius.pods.logformat import LogOptions, render
from mobius.pods.script import job_name, render_job
from mobius.runtime import Podman

FAKE_PODMAN = r"""#!/bin/bash
# Records each call as NUL-separated argv, one file per call, and fakes the IP lookup.
n=$(ls "$RECORD_DIR" | wc -l)
printf '%s\0' "$@" > "$RECORD_DIR/$(printf %03d "$n")"
case " $* " in *" inspect "*) echo 10.88.0.9 ;; esac
case " $* " in *" run "*) echo "ran"; exit "${FAKE_EXIT:-0}" ;; esac
exit 0
"""


def log_text(pod_dir: Path, container: str, run: int = 0) -> str:
    """A container's log as the user reads it (the job script writes CRI-format lines)."""
    return render((pod_dir / "logs" / container / f"{run}.log").read_bytes(), LogOptions()).decode()


def make_pod(**spec: object) -> Pod:
    raw = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "0000-uid"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}],
            **spec,
        },
    }
    return msgspec.convert(raw, Pod)


@pytest.fixture
def fake_podman(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "podman"
    fake.write_text(FAKE_PODMAN)
    fake.chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "RECORD_DIR": str(record)}
    return record, env


def run_script(pod: Pod, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir(exist_ok=True)
    job = render_job(pod, pod_dir=str(pod_dir), runtime=Podman(global_flags=("--log-level=error",)))
    script = tmp_path / "job.sh"
    script.write_text(job.script)
    return subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, timeout=30, check=False
    )


def recorded_runs(record: Path) -> list[list[str]]:
    calls = [f.read_bytes().split(b"\0")[:-1] for f in sorted(record.iterdir())]
    return [[a.decode() for a in c] for c in calls if b"run" in c]


def test_script_is_valid_bash(tmp_path: Path) -> None:
    pod = make_pod(initContainers=[{"name": "init", "image": "busybox", "command": ["true"]}])
    job = render_job(pod, pod_dir="/scratch/pods/u", runtime=Podman())
    script = tmp_path / "job.sh"
    script.write_text(job.script)
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "--job-name=" + job_name("0000-uid") in job.sbatch_args
    assert "--output=/scratch/pods/u/job.out" in job.sbatch_args


def test_runs_container_and_records_exit(
    tmp_path: Path, fake_podman: tuple[Path, dict[str, str]]
) -> None:
    record, env = fake_podman
    pod = make_pod(
        containers=[{"name": "c", "image": "busybox", "command": ["sh", "-c"], "args": ["exit 3"]}]
    )
    proc = run_script(pod, tmp_path, {**env, "FAKE_EXIT": "3"})
    assert proc.returncode == 3, proc.stderr
    ctl = tmp_path / "pod" / "ctl"
    assert (ctl / "c" / "c.exit").read_text().split()[0] == "3"
    assert (ctl / "pod.ip").read_text().strip() == "10.88.0.9"
    assert log_text(tmp_path / "pod", "c") == "ran\n"
    (run,) = recorded_runs(record)
    assert run[run.index("--entrypoint") + 1] == '["sh", "-c"]'
    assert run[-2:] == ["busybox", "exit 3"]


def test_init_failure_stops_the_pod(
    tmp_path: Path, fake_podman: tuple[Path, dict[str, str]]
) -> None:
    record, env = fake_podman
    pod = make_pod(initContainers=[{"name": "init", "image": "busybox"}])
    proc = run_script(pod, tmp_path, {**env, "FAKE_EXIT": "4"})
    assert proc.returncode == 4
    assert len(recorded_runs(record)) == 1  # the app container never started
    assert b"init container init exited 4" in proc.stderr


hostile = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
# Args and env values go through Kubernetes' $(VAR) expansion first ($$ becomes $), which
# tests/pods/test_env.py covers; here they must simply reach podman unchanged.
unexpanded = st.text(st.characters(codec="utf-8", exclude_characters="\x00$"), max_size=40)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=st.lists(unexpanded, max_size=4), value=unexpanded, workdir=hostile.filter(bool))
def test_no_pod_field_changes_what_the_shell_runs(
    tmp_path: Path,
    fake_podman: tuple[Path, dict[str, str]],
    args: list[str],
    value: str,
    workdir: str,
) -> None:
    record, env = fake_podman
    for f in record.iterdir():
        f.unlink()
    container = {
        "name": "c",
        "image": "busybox",
        "args": args,
        "workingDir": workdir,
        "env": [{"name": "V", "value": value}],
    }
    proc = run_script(make_pod(containers=[container]), tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    (run,) = recorded_runs(record)
    assert run[len(run) - len(args) - 1 :] == ["busybox", *args]
    assert f"V={value}" in run
    assert run[run.index("--workdir") + 1] == workdir


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"containers": []}, "spec.containers"),
        ({"restartPolicy": "Sometimes"}, "spec.restartPolicy"),
        ({"containers": [{"name": "c", "image": ""}]}, "spec.containers[0].image"),
        (
            {
                "containers": [
                    {"name": "c", "image": "b", "resources": {"requests": {"cpu": "lots"}}}
                ]
            },
            "spec.containers[0].resources.cpu",
        ),
        (
            {"containers": [{"name": "c", "image": "b"}, {"name": "c", "image": "b"}]},
            "spec.containers",
        ),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidPodSpec) as info:
        render_job(make_pod(**spec), pod_dir="/p", runtime=Podman())
    assert info.value.field == field


def test_resources_follow_kubernetes_semantics() -> None:
    pod = make_pod(
        initContainers=[
            {"name": "i", "image": "b", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}
        ],
        containers=[
            {
                "name": "a",
                "image": "b",
                "resources": {"requests": {"cpu": "500m", "memory": "100Mi"}},
            },
            {"name": "b", "image": "b", "resources": {"limits": {"cpu": "1", "memory": "2Gi"}}},
        ],
    )
    args = render_job(pod, pod_dir="/p", runtime=Podman()).sbatch_args
    assert "--cpus-per-task=3" in args  # max(init 3, apps 0.5 + 1)
    assert "--mem=2148M" in args  # max(init 1Gi, apps 100Mi + 2Gi) = 2148 MiB


def test_gpus_become_gres() -> None:
    pod = make_pod(
        initContainers=[
            {"name": "i", "image": "b", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
        ],
        containers=[
            {"name": "a", "image": "b", "resources": {"limits": {"nvidia.com/gpu": "2"}}},
            {
                "name": "b",
                "image": "b",
                "resources": {
                    "requests": {"nvidia.com/gpu": "1"},
                    "limits": {"nvidia.com/gpu": "1"},
                },
            },
        ],
    )
    assert "--gres=gpu:3" in render_job(pod, pod_dir="/p", runtime=Podman()).sbatch_args
    no_gpu = render_job(make_pod(), pod_dir="/p", runtime=Podman()).sbatch_args
    assert not any(a.startswith("--gres") for a in no_gpu)
    half = make_pod(
        containers=[
            {"name": "c", "image": "b", "resources": {"limits": {"nvidia.com/gpu": "500m"}}}
        ]
    )
    with pytest.raises(InvalidPodSpec, match="whole number"):
        render_job(half, pod_dir="/p", runtime=Podman())
