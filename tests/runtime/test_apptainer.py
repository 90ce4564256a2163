"""The Apptainer/Singularity runtime: what the job script asks of ``apptainer``, run for real.

Apptainer is not needed: the generated scripts run under bash with a recording stand-in for the
``apptainer`` (or ``singularity``) binary on PATH. It records each call's argv NUL-separated and
its environment, ``build`` creates the SIF, ``exec``/``run`` print ``ran`` and exit ``$FAKE_EXIT``
(``$FAKE_RUN_EXIT`` for ``run`` if set; with ``FAKE_HANG`` they wait to be stopped). One test submits a script to a real, private Slurm.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from unittest.mock import ANY

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius.errors import ConfigError, InvalidPodSpec
from mobius.models import Pod
from mobius.pods.logformat import LogOptions, render
from mobius.pods.records import PullRecord, parse_pull
from mobius.pods.script import render_job
from mobius.runtime import Apptainer, ContainerRun, Runtime, Singularity, runtime_named
from mobius.runtime.apptainer import image_source, is_local_image, shell_path, sif_name
from mobius.slurm.cluster import PrivateSlurmSettings, SlurmEnvironment, serve_private_slurm

FAKE_APPTAINER = r"""#!/bin/bash
# Records each call: argv NUL-separated in <time>-<pid>, the environment in <time>-<pid>.env.
call="$RECORD_DIR/$(date +%s%N)-$$"
printf '%s\0' "$@" >"$call.tmp" && mv "$call.tmp" "$call"
env -0 >"$call.env"
sub=
for a in "$@"; do case $a in build|exec|run) sub=$a; break ;; esac; done
case $sub in
build)
  shift $(($# - 2))
  sleep "${FAKE_BUILD_SLEEP:-0}"
  [ -n "${FAKE_BUILD_FAIL:-}" ] && { echo "FATAL: registry unreachable" >&2; exit 255; }
  echo "sif of $2" >"$1"
  ;;
exec|run)
  echo ran
  case ${FAKE_HANG:-} in
  term) trap 'echo "got TERM"; exit 143' TERM ;;
  ignore) trap '' TERM ;;
  *) [ "$sub" = run ] && exit "${FAKE_RUN_EXIT:-${FAKE_EXIT:-0}}"; exit "${FAKE_EXIT:-0}" ;;
  esac
  while :; do sleep 0.1; done
  ;;
esac
"""

SUBCOMMANDS = {b"build", b"exec", b"run"}


def log_text(pod_dir: Path, container: str, run: int = 0) -> str:
    """A container's log as the user reads it (the job script writes CRI-format lines)."""
    return render((pod_dir / "logs" / container / f"{run}.log").read_bytes(), LogOptions()).decode()


class Node:
    """A directory with the stand-in binary, its call records and an image cache."""

    def __init__(self, root: Path, binary: str = "apptainer") -> None:
        self.root = root
        self.bin = root / "bin"
        self.record = root / "record"
        self.cache = root / "cache"
        for d in (self.bin, self.record):
            d.mkdir(parents=True, exist_ok=True)
        self.add_binary(binary)
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "RECORD_DIR": str(self.record),
            "APPTAINERENV_LEAKED": "from the job's environment",
        }

    def add_binary(self, binary: str) -> None:
        fake = self.bin / binary
        fake.write_text(FAKE_APPTAINER)
        fake.chmod(0o755)

    def calls(self, subcommand: str | None = None) -> list[list[str]]:
        """Recorded argv (without the binary), oldest first, optionally of one subcommand."""
        found = []
        for f in sorted(self.record.iterdir()):
            if f.suffix in (".env", ".tmp"):
                continue
            argv = [a.decode() for a in f.read_bytes().split(b"\0")[:-1]]
            sub = next((a for a in argv if a.encode() in SUBCOMMANDS), None)
            if subcommand is None or sub == subcommand:
                found.append(argv)
        return found

    def environments(self, subcommand: str) -> list[dict[str, str]]:
        envs = []
        for f in sorted(self.record.iterdir()):
            if f.suffix or subcommand.encode() not in f.read_bytes().split(b"\0"):
                continue
            entries = Path(f"{f}.env").read_bytes().split(b"\0")[:-1]
            envs.append(dict(e.decode().split("=", 1) for e in entries))
        return envs

    def forget(self) -> None:
        for f in self.record.iterdir():
            f.unlink()
        shutil.rmtree(self.cache, ignore_errors=True)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path / "node")


def make_pod(**spec: object) -> Pod:
    raw = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "0000-uid"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.36"}],
            **spec,
        },
    }
    return msgspec.convert(raw, Pod)


def write_script(pod: Pod, pod_dir: Path, runtime: Runtime) -> Path:
    pod_dir.mkdir(parents=True, exist_ok=True)
    job = render_job(pod, pod_dir=str(pod_dir), runtime=runtime)
    script = pod_dir.parent / f"{pod_dir.name}.sh"
    script.write_text(job.script)
    return script


def run_pod(
    pod: Pod,
    node: Node,
    *,
    runtime: Runtime | None = None,
    pod_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    runtime = runtime or Apptainer(global_flags=("--quiet",), image_cache=str(node.cache))
    script = write_script(pod, pod_dir or node.root / "pod", runtime)
    return subprocess.run(
        ["bash", str(script)],
        env={**node.env, **(env or {})},
        capture_output=True,
        timeout=30,
        check=False,
    )


def container_exit(pod_dir: Path, name: str = "c") -> int:
    return int((pod_dir / "ctl" / "c" / f"{name}.exit").read_text().split()[0])


BASE = ["--cleanenv", "--no-eval", "--no-home", "--writable-tmpfs"]


# --------------------------------------------------------------------------------------------
# Rendering


def test_scripts_are_valid_bash(tmp_path: Path) -> None:
    pods = [
        make_pod(),
        make_pod(hostNetwork=True, restartPolicy="Always"),
        make_pod(
            initContainers=[{"name": "init", "image": "/images/tools.sif", "command": ["true"]}],
            containers=[
                {
                    "name": "a",
                    "image": "ghcr.io/org/app@sha256:" + "a" * 64,
                    "workingDir": "/w",
                    "env": [{"name": "A", "value": "1"}],
                    "imagePullPolicy": "Never",
                },
                {"name": "b", "image": "oras://registry.example/b:1", "args": ["x"]},
            ],
        ),
    ]
    runtimes: list[Runtime] = [
        Apptainer(),
        Singularity(fakeroot=True, run_flags=("--nv",), uts=False),
        Apptainer(image_cache="/scratch/$USER/sif"),
    ]
    for i, pod in enumerate(pods):
        for j, runtime in enumerate(runtimes):
            script = write_script(pod, tmp_path / f"pod-{i}-{j}", runtime)
            subprocess.run(["bash", "-n", str(script)], check=True)


def container(**fields: object) -> ContainerRun:
    values: dict[str, object] = {
        "name": "c",
        "image": "busybox:1.36",
        "command": (),
        "args": (),
        "env": (("A", "1"),),
    }
    return ContainerRun(**{**values, **fields})  # type: ignore[arg-type]


def test_exec_when_command_is_set() -> None:
    run = Apptainer().run_container(
        sandbox="s",
        container=container(command=("sh", "-c"), args=("echo $HOME",), working_dir="/w"),
    )
    name = sif_name("docker://busybox:1.36")
    assert run == (
        f"{{ with_pid c/c.pid env APPTAINERENV_A=1 "
        f'"${{APPTAINER[@]}}" exec "${{RUN_FLAGS[@]}}" --pwd /w "$IMAGE_CACHE"/{name} '
        "sh -c 'echo $HOME'; }"
    )


def test_run_when_only_args_are_set() -> None:
    run = Singularity().run_container(
        sandbox="s", container=container(args=("--port", "80"), pull_policy="Sometimes")
    )
    name = sif_name("docker://busybox:1.36")
    assert run == (
        f"{{ with_pid c/c.pid env SINGULARITYENV_A=1 "
        f'"${{APPTAINER[@]}}" run "${{RUN_FLAGS[@]}}" "$IMAGE_CACHE"/{name} --port 80; }}'
    )


def test_the_image_is_made_ready_before_the_container_runs() -> None:
    name = sif_name("docker://busybox:1.36")
    ready = Apptainer().pull_command(container=container())
    assert ready == f"image_ready docker://busybox:1.36 {name} IfNotPresent c"
    odd = Singularity().pull_command(container=container(pull_policy="Sometimes"))
    assert odd == f"image_ready docker://busybox:1.36 {name} IfNotPresent c"


def test_local_sif_files_are_used_as_they_are() -> None:
    for image in ("/images/tools.sif", "/images/tools", "tools.sif"):
        run = Apptainer().run_container(sandbox="s", container=container(image=image))
        assert Apptainer().pull_command(container=container(image=image)) == ""
        assert "image_ready" not in run
        assert run.endswith(f'"${{RUN_FLAGS[@]}}" {image}; }}')
    assert not is_local_image("docker://x/tools.sif")


def test_image_sources_follow_kubernetes_defaults() -> None:
    assert image_source("busybox") == "docker://busybox"
    assert image_source("quay.io/org/app:1") == "docker://quay.io/org/app:1"
    assert image_source("oras://ghcr.io/org/app:1") == "oras://ghcr.io/org/app:1"


def test_references_differing_in_tag_registry_or_digest_get_different_files() -> None:
    refs = [
        "docker://busybox",
        "docker://busybox:1.36",
        "docker://busybox:1.37",
        "docker://docker.io/library/busybox:1.36",
        "docker://quay.io/library/busybox:1.36",
        "docker://busybox@sha256:" + "a" * 64,
        "docker://busybox@sha256:" + "b" * 64,
        "docker://busybox/1.36",  # reads like busybox_1.36, as does busybox:1.36
        "docker://busybox_1.36",
        "oras://busybox:1.36",
    ]
    names = [sif_name(r) for r in refs]
    assert len(set(names)) == len(refs)
    assert names[1].startswith("busybox_1.36-")
    assert sif_name("docker://busybox:1.36") == names[1]  # stable: the same file every time


@given(ref=st.text(max_size=300))
def test_no_reference_names_a_file_outside_the_cache(ref: str) -> None:
    name = sif_name(ref)
    assert "/" not in name
    assert "\0" not in name
    assert name not in (".", "..")
    assert not name.startswith(".")
    assert name.endswith(".sif")
    assert len(name.encode()) < 255
    cache = Path("/cache")
    assert (cache / name).parent == cache
    assert os.path.normpath(cache / name) == str(cache / name)


@settings(max_examples=50, deadline=None)
@given(path=st.text(st.characters(codec="utf-8", exclude_characters="\0$~"), min_size=1))
def test_image_cache_path_reaches_the_shell_literally(path: str) -> None:
    out = subprocess.run(
        ["bash", "-c", f"printf %s {shell_path(path)}"], capture_output=True, check=True
    )
    assert out.stdout.decode() == path


def test_image_cache_path_expands_variables_only() -> None:
    env = {"HOME": "/home/u", "SCRATCH": "/s p", "PATH": os.environ["PATH"]}
    for path, expected in [
        ("$HOME/.mobius/images", "/home/u/.mobius/images"),
        ("~/sif", "/home/u/sif"),
        ("${SCRATCH}/$(rm -rf x)/`id`", "/s p/$(rm -rf x)/`id`"),
    ]:
        out = subprocess.run(
            ["bash", "-c", f"printf %s {shell_path(path)}"],
            env=env,
            capture_output=True,
            check=True,
        )
        assert out.stdout.decode() == expected


def test_stop_and_remove_are_shell_functions_of_the_script() -> None:
    runtime = Apptainer()
    assert runtime.stop_sandbox(sandbox="s", grace='"$GRACE"') == 'stop_containers "$GRACE"'
    assert runtime.remove_sandbox(sandbox="s") == 'rm -f "$IMAGE_CACHE"/*."$$".tmp'


def test_runtime_named_knows_both() -> None:
    a, s = runtime_named("apptainer", flags=("--quiet",)), runtime_named("singularity")
    assert isinstance(a, Apptainer)
    assert a.binary == "apptainer"
    assert a.global_flags == ("--quiet",)
    assert isinstance(s, Singularity)
    assert s.binary == "singularity"
    assert repr(a) == "<Apptainer apptainer --quiet image_cache=$HOME/.mobius/images>"
    with pytest.raises(ConfigError, match="apptainer"):
        runtime_named("docker")


# --------------------------------------------------------------------------------------------
# Running the script against the stand-in


def test_exec_argv_env_and_exit_code(node: Node) -> None:
    pod = make_pod(
        containers=[
            {
                "name": "c",
                "image": "busybox:1.36",
                "command": ["sh", "-c"],
                "args": ["exit 3"],
                "workingDir": "/w",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": ""}],
            }
        ]
    )
    proc = run_pod(pod, node, env={"FAKE_EXIT": "3"})
    assert proc.returncode == 3, proc.stderr
    pod_dir = node.root / "pod"
    assert container_exit(pod_dir) == 3
    assert log_text(pod_dir, "c") == "ran\n"
    assert (pod_dir / "ctl" / "pod.ip").read_text().strip()  # the node's address
    sif = node.cache / sif_name("docker://busybox:1.36")
    (build,) = node.calls("build")
    assert build[:2] == ["--quiet", "build"]
    assert build[3] == "docker://busybox:1.36"
    assert sif.read_text() == "sif of docker://busybox:1.36\n"
    (run,) = node.calls("exec")
    assert run == [
        "--quiet",
        "exec",
        *BASE,
        "--uts",
        "--hostname",
        "p",
        "--pwd",
        "/w",
        str(sif),
        "sh",
        "-c",
        "exit 3",
    ]
    (env,) = node.environments("exec")
    assert env["APPTAINERENV_A"] == "1"
    assert env["APPTAINERENV_B"] == ""
    assert "APPTAINERENV_LEAKED" not in env


def test_run_argv_with_host_network_fakeroot_and_singularity(node: Node) -> None:
    node.add_binary("singularity")
    pod = make_pod(
        hostNetwork=True,
        containers=[
            {
                "name": "c",
                "image": "/images/tools.sif",
                "args": ["--port", "80"],
                "env": [{"name": "A", "value": "1"}],
            },
        ],
    )
    runtime = Singularity(fakeroot=True, run_flags=("--nv",), image_cache=str(node.cache))
    proc = run_pod(pod, node, runtime=runtime)
    assert proc.returncode == 0, proc.stderr
    assert node.calls("build") == []
    (run,) = node.calls("run")
    assert run == ["run", *BASE, "--fakeroot", "--nv", "/images/tools.sif", "--port", "80"]
    (env,) = node.environments("run")
    assert env["SINGULARITYENV_A"] == "1"


def test_volumes_become_bind_flags(node: Node) -> None:
    host = node.root / "host"
    host.mkdir()
    pod = make_pod(
        volumes=[
            {"name": "scratch", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": str(host), "type": "Directory"}},
        ],
        containers=[
            {
                "name": "c",
                "image": "/images/tools.sif",
                "command": ["true"],
                "volumeMounts": [
                    {"name": "host", "mountPath": "/data/in", "subPath": "in", "readOnly": True},
                    {"name": "scratch", "mountPath": "/data"},
                ],
            }
        ],
    )
    proc = run_pod(pod, node)
    assert proc.returncode == 0, proc.stderr
    (run,) = node.calls("exec")
    binds = [run[i + 1] for i, a in enumerate(run) if a == "--bind"]
    assert binds == [f"{node.root}/pod/volumes/scratch:/data", f"{host}/in:/data/in:ro"]
    assert run.index("--bind") < run.index("/images/tools.sif")
    assert (host / "in").is_dir()
    for path in ("/a,b", "/a:b"):
        comma = make_pod(
            volumes=[{"name": "h", "emptyDir": {}}],
            containers=[
                {"name": "c", "image": "i", "volumeMounts": [{"name": "h", "mountPath": path}]}
            ],
        )
        with pytest.raises(InvalidPodSpec, match="apptainer --bind cannot carry"):
            render_job(comma, pod_dir="/p", runtime=Apptainer())


def test_init_failure_stops_the_pod(node: Node) -> None:
    pod = make_pod(initContainers=[{"name": "init", "image": "busybox:1.36", "command": ["false"]}])
    proc = run_pod(pod, node, env={"FAKE_EXIT": "4"})
    assert proc.returncode == 4
    assert b"init container init exited 4" in proc.stderr
    assert len(node.calls("exec")) == 1
    assert node.calls("run") == []
    assert len(node.calls("build")) == 1


def test_missing_binary_fails_the_sandbox(node: Node) -> None:
    proc = run_pod(make_pod(), node, runtime=Singularity(image_cache=str(node.cache)))
    assert proc.returncode == 125
    assert b"mobius: singularity is not on PATH" in proc.stderr


hostile = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
env_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.lists(hostile, max_size=3),
    args=st.lists(hostile, max_size=4),
    env=st.lists(st.tuples(env_name, hostile), max_size=4),
    workdir=hostile.filter(bool),
    image=st.text(
        st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1, max_size=30
    ),
)
def test_no_pod_field_changes_what_the_shell_runs(
    node: Node,
    command: list[str],
    args: list[str],
    env: list[tuple[str, str]],
    workdir: str,
    image: str,
) -> None:
    node.forget()
    spec = {
        "name": "c",
        "image": image,
        "command": command,
        "args": args,
        "workingDir": workdir,
        "env": [{"name": k, "value": v} for k, v in env],
    }
    proc = run_pod(make_pod(containers=[spec]), node)
    assert proc.returncode == 0, proc.stderr
    sub = "exec" if command else "run"
    (run,) = node.calls(sub)
    assert run[run.index("--pwd") + 1] == workdir
    assert run[run.index("--pwd") + 2 :] == [
        image if is_local_image(image) else str(node.cache / sif_name(image_source(image))),
        *command,
        *args,
    ]
    (seen,) = node.environments(sub)
    for k, v in dict(env).items():
        assert seen[f"APPTAINERENV_{k}"] == v
    assert sorted(os.listdir(node.cache)) == sorted(
        []
        if is_local_image(image)
        else [sif_name(image_source(image)), *cache_files(sif_name(image_source(image)))]
    )


# --------------------------------------------------------------------------------------------
# Pull policies and the cache


def cache_files(sif: str) -> list[str]:
    """What the cache holds beside a SIF: its lock, and the outcome of its last build."""
    return [f"{sif}.last", f"{sif}.lock"]


def pull_record(pod_dir: Path, name: str = "c") -> PullRecord | None:
    try:
        return parse_pull((pod_dir / "ctl" / "c" / f"{name}.pull").read_text().strip())
    except FileNotFoundError:
        return None


def start_pod(pod: Pod, node: Node, pod_dir: Path, **env: str) -> subprocess.Popen[bytes]:
    """The pod's job under bash, to be stopped with :func:`stop` (the pod's grace period: 1 s)."""
    pod = msgspec.structs.replace(
        pod, spec=msgspec.structs.replace(pod.spec, termination_grace_period_seconds=1)
    )
    script = write_script(pod, pod_dir, Apptainer(image_cache=str(node.cache)))
    return subprocess.Popen(
        ["bash", str(script)],
        env={**node.env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_pull(pod_dir: Path, state: str) -> PullRecord:
    """The pull record once it says ``state`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + 30
    while (record := pull_record(pod_dir)) is None or record.state != state:
        assert time.monotonic() < deadline, f"no {state!r} pull record; last {record}"
        time.sleep(0.05)
    return record


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)  # as `scancel --signal=TERM --batch` does
    return proc.wait(timeout=30)


def test_never_waits_for_a_missing_image(node: Node) -> None:
    """As in Kubernetes: ErrImageNeverPull keeps the container waiting, the pod does not fail."""
    pod = make_pod(containers=[{"name": "c", "image": "busybox:1.36", "imagePullPolicy": "Never"}])
    pod_dir = node.root / "pod"
    proc = start_pod(pod, node, pod_dir)
    record = wait_for_pull(pod_dir, "absent")
    assert record.attempt == 1
    assert "imagePullPolicy is Never" in record.message
    assert stop(proc) != 0
    assert not (pod_dir / "ctl" / "c" / "c.exit").exists()  # it never ran
    assert node.calls() == []


def test_never_uses_a_stored_image(node: Node) -> None:
    node.cache.mkdir()
    (node.cache / sif_name("docker://busybox:1.36")).write_text("stored")
    pod = make_pod(containers=[{"name": "c", "image": "busybox:1.36", "imagePullPolicy": "Never"}])
    assert run_pod(pod, node).returncode == 0
    assert node.calls("build") == []
    assert len(node.calls("run")) == 1
    assert pull_record(node.root / "pod") == PullRecord("present", 1, ANY)


def test_if_not_present_builds_once(node: Node) -> None:
    pod = make_pod(containers=[{"name": "c", "image": "busybox:1.36"}])
    states = []
    for i in range(2):
        assert run_pod(pod, node, pod_dir=node.root / f"pod{i}").returncode == 0
        record = pull_record(node.root / f"pod{i}")
        assert record is not None
        states.append(record.state)
    assert states == ["pulled", "present"]
    assert len(node.calls("build")) == 1
    assert len(node.calls("run")) == 2


def test_always_rebuilds_and_replaces_atomically(node: Node) -> None:
    pod = make_pod(containers=[{"name": "c", "image": "busybox"}])  # no tag: Always
    sif = node.cache / sif_name("docker://busybox")
    node.cache.mkdir()
    sif.write_text("old")
    time.sleep(1.1)  # "built while we waited" compares seconds
    assert run_pod(pod, node).returncode == 0
    assert sif.read_text() == "sif of docker://busybox\n"
    (build,) = node.calls("build")
    assert build[-2].startswith(f"{sif}.")
    assert build[-2].endswith(".tmp")
    assert sorted(os.listdir(node.cache)) == [sif.name, *cache_files(sif.name)]
    record = pull_record(node.root / "pod")
    assert record is not None
    assert record.state == "pulled"
    assert record.pull_us is not None
    assert record.total_us is not None
    assert record.total_us >= record.pull_us


def test_always_keeps_the_stored_image_when_the_registry_is_unreachable(node: Node) -> None:
    pod = make_pod(containers=[{"name": "c", "image": "busybox:latest"}])
    sif = node.cache / sif_name("docker://busybox:latest")
    node.cache.mkdir()
    sif.write_text("old")
    time.sleep(1.1)
    proc = run_pod(pod, node, env={"FAKE_BUILD_FAIL": "1"})
    assert proc.returncode == 0, proc.stderr
    assert sif.read_text() == "old"
    assert pull_record(node.root / "pod") == PullRecord(
        "kept", 1, ANY, message="FATAL: registry unreachable"
    )
    assert log_text(node.root / "pod", "c") == "ran\n"
    assert len(node.calls("run")) == 1
    assert sorted(os.listdir(node.cache)) == [sif.name, *cache_files(sif.name)]


def test_a_failed_pull_keeps_the_container_waiting(node: Node) -> None:
    pod_dir = node.root / "pod"
    proc = start_pod(make_pod(), node, pod_dir, FAKE_BUILD_FAIL="1")
    record = wait_for_pull(pod_dir, "failed")
    assert record == PullRecord("failed", 1, ANY, message="FATAL: registry unreachable")
    assert stop(proc) != 0
    assert node.calls("run") == []
    assert len(node.calls("build")) == 1  # the next try comes after a 10 s back-off


@pytest.mark.parametrize("policy", ["IfNotPresent", "Always"])
def test_concurrent_pods_on_a_node_pull_once(node: Node, policy: str) -> None:
    pod = make_pod(containers=[{"name": "c", "image": "busybox:1.36", "imagePullPolicy": policy}])
    runtime = Apptainer(image_cache=str(node.cache))
    scripts = [write_script(pod, node.root / f"pod{i}", runtime) for i in range(2)]
    env = {**node.env, "FAKE_BUILD_SLEEP": "1"}
    procs = [subprocess.Popen(["bash", str(s)], env=env) for s in scripts]
    assert [p.wait(timeout=30) for p in procs] == [0, 0]
    assert len(node.calls("build")) == 1
    assert len(node.calls("run")) == 2
    records = [pull_record(node.root / f"pod{i}") for i in range(2)]
    assert sorted(r.state for r in records if r is not None) == ["present", "pulled"]


def test_a_failed_build_answers_the_pods_that_waited_for_it(node: Node) -> None:
    pod = make_pod()
    procs = [
        start_pod(pod, node, node.root / f"pod{i}", FAKE_BUILD_FAIL="1", FAKE_BUILD_SLEEP="1")
        for i in range(2)
    ]
    records = [wait_for_pull(node.root / f"pod{i}", "failed") for i in range(2)]
    assert [stop(p) != 0 for p in procs] == [True, True]
    assert len(node.calls("build")) == 1
    assert {r.message for r in records} == {"FATAL: registry unreachable"}


@pytest.mark.parametrize("runtime", [Apptainer, Singularity])
def test_a_registry_login_reaches_the_build(node: Node, runtime: type[Apptainer]) -> None:
    node.add_binary(runtime.name)
    pod_dir = node.root / "pod"
    (pod_dir / "pull-auth").mkdir(parents=True)
    (pod_dir / "pull-auth" / "c").write_bytes(b"robot\0p@ss 'w\"ord $x\n\0")
    proc = run_pod(make_pod(), node, runtime=runtime(image_cache=str(node.cache)))
    assert proc.returncode == 0, proc.stderr
    (env,) = node.environments("build")
    prefix = runtime.name.upper()
    assert env[f"{prefix}_DOCKER_USERNAME"] == "robot"
    assert env[f"{prefix}_DOCKER_PASSWORD"] == "p@ss 'w\"ord $x\n"
    (run,) = node.environments("run")
    assert f"{prefix}_DOCKER_PASSWORD" not in run


# --------------------------------------------------------------------------------------------
# Stopping


@pytest.mark.parametrize(("hang", "code"), [("term", 143), ("ignore", 137)])
def test_term_stops_the_containers(node: Node, hang: str, code: int) -> None:
    pod = make_pod(
        terminationGracePeriodSeconds=1,
        restartPolicy="Always",
        containers=[{"name": "a", "image": "/i.sif"}, {"name": "b", "image": "/i.sif"}],
    )
    script = write_script(pod, node.root / "pod", Apptainer(image_cache=str(node.cache)))
    proc = subprocess.Popen(["bash", str(script)], env={**node.env, "FAKE_HANG": hang})
    ctl = node.root / "pod" / "ctl" / "c"
    deadline = time.monotonic() + 10
    while len(node.calls("run")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as `scancel --signal=TERM --batch` does
    assert proc.wait(timeout=60) == code  # a hang guard, not a timing assertion
    for name in ("a", "b"):
        assert int((ctl / f"{name}.exit").read_text().split()[0]) == code
        assert not (ctl / f"{name}.restarts").exists()
    if hang == "term":
        assert log_text(node.root / "pod", "a") == "ran\ngot TERM\n"
    assert len(node.calls("run")) == 2


# --------------------------------------------------------------------------------------------
# Through a real Slurm


async def run_command(argv: list[str], env: Mapping[str, str]) -> str:
    result = await trio.run_process(argv, env={**os.environ, **env}, capture_stdout=True)
    return result.stdout.decode()


FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


async def run_through_slurm(
    pod: Pod, node: Node, root: Path, pod_dir: Path, *exports: str
) -> tuple[str, str]:
    """Submit the pod's script to a private Slurm; (final state, job id)."""
    await trio.Path(pod_dir).mkdir()
    job = render_job(pod, pod_dir=str(pod_dir), runtime=Apptainer(image_cache=str(node.cache)))
    script = root / "job.sh"
    await trio.Path(script).write_text(job.script)
    export = ",".join(
        ["--export=ALL", f"PATH={node.env['PATH']}", f"RECORD_DIR={node.record}", *exports]
    )
    async with trio.open_nursery() as nursery:
        slurm: SlurmEnvironment = await nursery.start(
            serve_private_slurm, PrivateSlurmSettings(root=root / "slurm")
        )
        out = await run_command(["sbatch", *job.sbatch_args, export, str(script)], slurm.env)
        job_id = out.strip().split(";")[0]
        with trio.fail_after(60):
            while True:
                state = await run_command(
                    ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"],
                    slurm.env,
                )
                if state.strip() in FINAL_STATES:
                    break
                await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    return state.strip(), job_id


@pytest.mark.e2e
async def test_job_runs_through_slurm() -> None:
    root = Path(tempfile.mkdtemp(prefix="mob-"))
    try:
        node = Node(root / "node")
        pod = make_pod(
            initContainers=[{"name": "init", "image": "busybox:1.36", "command": ["true"]}],
            containers=[
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "args": ["a b", "$HOME"],
                    "env": [{"name": "GREETING", "value": 'hi, "you"=x'}],
                }
            ],
        )
        pod_dir = root / "pod"
        state, job_id = await run_through_slurm(pod, node, root, pod_dir, "FAKE_RUN_EXIT=3")
        assert state == "FAILED"
        ctl = pod_dir / "ctl"
        assert container_exit(pod_dir, "init") == 0
        assert container_exit(pod_dir) == 3
        assert (ctl / "node").read_text().strip()
        assert (ctl / "pod.ip").read_text().strip()
        assert log_text(pod_dir, "c") == "ran\n"
        assert (pod_dir / "job.out").read_text() == ""  # the script itself said nothing
        assert len(node.calls("build")) == 1
        (run,) = node.calls("run")
        assert run == [
            "run",
            *BASE,
            "--uts",
            "--hostname",
            "p",
            str(node.cache / sif_name("docker://busybox:1.36")),
            "a b",
            "$HOME",
        ]
        (env,) = node.environments("run")
        assert env["APPTAINERENV_GREETING"] == 'hi, "you"=x'
        assert env["SLURM_JOB_ID"] == job_id
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.e2e
async def test_mpi_launcher_starts_one_container_per_rank_through_slurm() -> None:
    """``slurm.mobius.io/mpi: srun``: real srun inside the real job starts the runtime once per
    rank, each with the container's environment and its own SLURM_PROCID."""
    root = Path(tempfile.mkdtemp(prefix="mob-"))
    try:
        node = Node(root / "node")
        pod = msgspec.convert(
            {
                "metadata": {
                    "name": "p",
                    "namespace": "ns",
                    "uid": "0000-mpi",
                    "annotations": {
                        "slurm.mobius.io/mpi": "srun --ntasks=2 --cpus-per-task=1",
                        "slurm.mobius.io/ntasks": "2",
                    },
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "solver",
                            "image": "busybox:1.36",
                            "command": ["./solve"],
                            "env": [{"name": "MESH", "value": "fine"}],
                        },
                        {"name": "side", "image": "busybox:1.36", "command": ["true"]},
                    ],
                },
            },
            Pod,
        )
        state, job_id = await run_through_slurm(pod, node, root, root / "pod")
        assert state == "COMPLETED"
        ranks = [env for env in node.environments("exec") if env.get("APPTAINERENV_MESH")]
        assert sorted(env["SLURM_PROCID"] for env in ranks) == ["0", "1"]
        assert {env["SLURM_JOB_ID"] for env in ranks} == {job_id}
        # The sidecar is not an MPI program: it runs once, outside srun.
        side = [c for c in node.calls("exec") if c[-1] == "true"]
        assert len(side) == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
