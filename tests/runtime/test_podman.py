"""The Podman runtime's volume mounts and image step: what ``podman`` receives, recorded by
stand-in binaries while the generated job scripts run under bash (podman itself runs in the e2e
tests)."""

from __future__ import annotations

import hashlib
import os
import posixpath
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mobius.errors import InvalidPodSpec
from mobius.models import Pod
from mobius.pods.env import PodRefs
from mobius.pods.records import PullRecord, parse_pull
from mobius.pods.script import render_job
from mobius.runtime import Podman
from mobius.runtime.base import ContainerRun, Mount, reference_file_name
from tests.pods.test_script import fake_podman, recorded_runs  # noqa: F401


def make_pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> Pod:
    raw = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "0000-uid"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": volumes,
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": mounts}],
        },
    }
    return msgspec.convert(raw, Pod)


def volume_flags(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]


def run(
    pod: Pod, tmp_path: Path, env: dict[str, str], refs: PodRefs | None = None
) -> list[list[str]]:
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir(exist_ok=True)
    job = render_job(pod, pod_dir=str(pod_dir), runtime=Podman(), refs=refs)
    script = tmp_path / "job.sh"
    script.write_text(job.script)
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return recorded_runs(Path(env["RECORD_DIR"]))


def test_volumes_become_volume_flags(
    tmp_path: Path,
    fake_podman: tuple[Path, dict[str, str]],  # noqa: F811
) -> None:
    _, env = fake_podman
    host = tmp_path / "host"
    host.mkdir()
    pod = make_pod(
        [
            {"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "host", "hostPath": {"path": str(host), "type": "Directory"}},
        ],
        [
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "host", "mountPath": "/scratch/host", "subPath": "sub", "readOnly": True},
        ],
    )
    (argv,) = run(pod, tmp_path, env, PodRefs(config_maps={"cfg": {"k": "v"}}))
    volumes = tmp_path / "pod" / "volumes"
    assert volume_flags(argv) == [  # shallow mount points first
        f"{volumes}/scratch:/scratch",
        f"{volumes}/cfg:/etc/app:ro",  # configMap volumes are always read-only
        f"{host}/sub:/scratch/host:ro",  # the subPath, made by the job on the node
    ]
    assert (host / "sub").is_dir()
    assert argv.index("--volume") < argv.index("busybox")


def test_paths_podman_cannot_carry_are_refused() -> None:
    for volume, mount in [
        ({"name": "h", "hostPath": {"path": "/a:b"}}, {"name": "h", "mountPath": "/h"}),
        ({"name": "h", "emptyDir": {}}, {"name": "h", "mountPath": "/x:y"}),
    ]:
        with pytest.raises(InvalidPodSpec) as info:
            render_job(make_pod([volume], [mount]), pod_dir="/p", runtime=Podman())
        assert info.value.field == "spec.containers[0].volumeMounts[0]"
        assert "':'" in info.value.why
        assert "podman --volume cannot carry" in info.value.why
    comma = ContainerRun(
        name="c",
        image="busybox",
        command=(),
        args=(),
        env=(),
        mounts=(Mount("/a,b", "/c,d", read_only=True),),
    )
    assert "--volume /a,b:/c,d:ro" in Podman().run_container(sandbox="s", container=comma)


paths = st.text(st.characters(codec="utf-8", exclude_characters="\x00:"), max_size=30)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=paths, target=paths, read_only=st.booleans())
def test_no_mount_path_changes_what_the_shell_runs(
    tmp_path: Path,
    fake_podman: tuple[Path, dict[str, str]],  # noqa: F811
    host: str,
    target: str,
    read_only: bool,
) -> None:
    record, env = fake_podman
    for f in record.iterdir():
        f.unlink()
    assume(".." not in host.split("/"))
    pod = make_pod(
        [{"name": "h", "hostPath": {"path": "/" + host}}],
        [{"name": "h", "mountPath": "/" + target, "readOnly": read_only}],
    )
    (argv,) = run(pod, tmp_path, env)
    src, dst = posixpath.normpath("/" + host), posixpath.normpath("/" + target)
    assert volume_flags(argv) == [f"{src}:{dst}" + (":ro" if read_only else "")]


# --- images: podman_image, the image step before `podman run --pull=never` ---------------------

# A stand-in for podman (tests only: no registry is reachable here, and these tests are about
# the job's side). Its image store is a folder of marker files; `pull` appends its argv to
# $RECORD_DIR/pulls, takes $FAKE_PULL_SLEEP seconds (or, with $FAKE_PULL_GATE, until the file
# $RECORD_DIR/release exists), fails for a name containing "missing" or when $FAKE_PULL_FAIL is
# set, and otherwise adds the image to the store.
STORE_PODMAN = r"""#!/bin/bash
while [ $# -gt 0 ]; do case $1 in --*) shift ;; *) break ;; esac; done
sub=$1
shift
marker() { printf '%s' "$1" | sha256sum | cut -c1-32; }
case $sub in
image) [ "$1" = exists ] && [ -e "$FAKE_STORE/$(marker "$2")" ]; exit ;;
pull)
  image=${!#}
  printf '%s\n' "$*" >>"$RECORD_DIR/pulls"
  sleep "${FAKE_PULL_SLEEP:-0}"
  while [ -n "${FAKE_PULL_GATE:-}" ] && [ ! -e "$RECORD_DIR/release" ]; do sleep 0.1; done
  case $image in *missing*) FAKE_PULL_FAIL=1 ;; esac
  if [ -n "${FAKE_PULL_FAIL:-}" ]; then
    echo "Trying to pull $image..." >&2
    echo "Error: initializing source docker://$image: pinging container registry: no such host" >&2
    exit 125
  fi
  touch "$FAKE_STORE/$(marker "$image")"
  echo sha256:0123456789abcdef
  ;;
inspect) echo 10.88.0.9 ;;
run) echo ran ;;
esac
exit 0
"""


class Node:
    """A folder with the stand-in podman first on PATH, its image store and its records."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for d in ("bin", "record", "store", "locks"):
            (root / d).mkdir(parents=True, exist_ok=True)
        fake = root / "bin" / "podman"
        fake.write_text(STORE_PODMAN)
        fake.chmod(0o755)
        self.runtime = Podman(pull_locks=str(root / "locks"))
        self.env = {
            **os.environ,
            "PATH": f"{root / 'bin'}:{os.environ['PATH']}",
            "RECORD_DIR": str(root / "record"),
            "FAKE_STORE": str(root / "store"),
        }

    def store(self, image: str) -> None:
        digest = hashlib.sha256(image.encode()).hexdigest()[:32]
        (self.root / "store" / digest).touch()

    def pulls(self) -> list[str]:
        try:
            return (self.root / "record" / "pulls").read_text().split("\n")[:-1]
        except FileNotFoundError:
            return []

    def script(self, name: str, image: str, policy: str | None = None) -> Path:
        c: dict[str, Any] = {"name": "c", "image": image}
        if policy:
            c["imagePullPolicy"] = policy
        raw = {
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [c],
            },
        }
        pod_dir = self.root / name
        pod_dir.mkdir(exist_ok=True)
        job = render_job(msgspec.convert(raw, Pod), pod_dir=str(pod_dir), runtime=self.runtime)
        script = self.root / f"{name}.sh"
        script.write_text(job.script)
        return script

    def run(self, name: str, image: str, policy: str | None = None, **env: str) -> int:
        proc = subprocess.run(
            ["bash", str(self.script(name, image, policy))],
            env={**self.env, **env},
            capture_output=True,
            timeout=60,
            check=False,
        )
        return proc.returncode

    def start(
        self, name: str, image: str, policy: str | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["bash", str(self.script(name, image, policy))],
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def record(self, name: str) -> PullRecord | None:
        try:
            return parse_pull((self.root / name / "ctl" / "c" / "c.pull").read_text().strip())
        except FileNotFoundError:
            return None

    def wait_for(self, name: str, state: str) -> PullRecord:
        """The pod's pull record once it says ``state`` (a hang guard, not a timing assertion)."""
        deadline = time.monotonic() + 60
        while (record := self.record(name)) is None or record.state != state:
            assert time.monotonic() < deadline, f"{name}: no {state!r} record; last {record}"
            time.sleep(0.05)
        return record


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path / "node")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)  # as `scancel --signal=TERM --batch` does
    return proc.wait(timeout=60)


def test_the_image_step_and_the_run_never_pull_themselves() -> None:
    run = ContainerRun(name="c", image="busybox", command=(), args=(), env=(), pull_policy="Always")
    lock = reference_file_name("busybox")
    assert Podman().pull_command(container=run) == f"podman_image busybox Always {lock}"
    odd = msgspec.structs.replace(run, pull_policy="Sometimes", image="reg.example/a b")
    step = Podman().pull_command(container=odd)
    assert (
        step
        == f"podman_image 'reg.example/a b' IfNotPresent {reference_file_name('reg.example/a b')}"
    )
    assert "--pull=never" in Podman().run_container(sandbox="s", container=run).split()


def test_if_not_present_pulls_a_missing_image_once(node: Node) -> None:
    image = "registry.example/team/app:1"
    assert node.run("a", image) == 0
    record = node.record("a")
    assert record is not None
    assert record.state == "pulled"
    assert record.pull_us is not None
    assert node.run("b", image) == 0
    assert node.record("b") == PullRecord("present", 1, ANY)
    assert node.pulls() == [f"--quiet {image}"]


def test_never_waits_for_a_missing_image_and_uses_a_stored_one(node: Node) -> None:
    proc = node.start("a", "registry.example/app:1", "Never")
    assert node.wait_for("a", "absent").attempt == 1
    assert stop(proc) != 0
    assert not (node.root / "a" / "ctl" / "c" / "c.exit").exists()  # it never ran
    node.store("registry.example/app:1")
    assert node.run("b", "registry.example/app:1", "Never") == 0
    assert node.record("b") == PullRecord("present", 1, ANY)
    assert node.pulls() == []


def test_always_pulls_and_keeps_the_stored_image_when_the_registry_is_unreachable(
    node: Node,
) -> None:
    image = "registry.example/app:latest"
    node.store(image)
    assert node.run("a", image) == 0  # :latest is Always
    record = node.record("a")
    assert record is not None
    assert record.state == "pulled"
    time.sleep(1.1)  # "pulled while we waited" compares seconds
    assert node.run("b", image, FAKE_PULL_FAIL="1") == 0
    assert node.record("b") == PullRecord(
        "kept", 1, ANY, message=f"Error: initializing source docker://{image}: "
        "pinging container registry: no such host",
    )  # fmt: skip
    assert len(node.pulls()) == 2


def test_a_failed_pull_keeps_the_container_waiting(node: Node) -> None:
    proc = node.start("a", "registry.example/missing:1")
    record = node.wait_for("a", "failed")
    assert record.attempt == 1
    assert record.message.startswith("Error: initializing source docker://registry.example/missing")
    assert stop(proc) != 0
    assert not (node.root / "a" / "ctl" / "c" / "c.exit").exists()


def waiting_for_the_lock(node: Node) -> int:
    """How many of the node's image steps wait in ``flock`` (read from /proc)."""
    mark = f"FAKE_STORE={node.root / 'store'}".encode()
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[:2] == [b"flock", b"9"] and mark in (entry / "environ").read_bytes().split(
                b"\0"
            ):
                count += 1
        except OSError:
            continue
    return count


@pytest.mark.parametrize("policy", ["IfNotPresent", "Always"])
def test_a_burst_of_pods_pulls_an_image_once(node: Node, policy: str) -> None:
    image = "registry.example/burst:1"
    procs = [node.start(f"p{i}", image, policy, FAKE_PULL_GATE="1") for i in range(20)]
    # The first pull is held until the other 19 pods wait for its lock: they asked during it.
    deadline = time.monotonic() + 60
    while waiting_for_the_lock(node) < 19:
        assert time.monotonic() < deadline, "the pods did not all reach the image step"
        time.sleep(0.1)
    (node.root / "record" / "release").touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * 20
    assert node.pulls() == [f"--quiet {image}"]
    states = [r.state for i in range(20) if (r := node.record(f"p{i}")) is not None]
    assert sorted(states) == ["present"] * 19 + ["pulled"]


def test_a_failed_pull_answers_the_pods_that_waited_for_it(node: Node) -> None:
    image = "registry.example/missing:2"
    procs = [node.start(f"p{i}", image, FAKE_PULL_GATE="1") for i in range(3)]
    deadline = time.monotonic() + 60
    while waiting_for_the_lock(node) < 2:
        assert time.monotonic() < deadline, "the pods did not all reach the image step"
        time.sleep(0.1)
    (node.root / "record" / "release").touch()
    records = [node.wait_for(f"p{i}", "failed") for i in range(3)]
    assert all(stop(p) != 0 for p in procs)
    assert len(node.pulls()) == 1
    assert len({r.message for r in records}) == 1


def test_pull_secrets_reach_podman_as_an_auth_file(node: Node) -> None:
    script = node.script("a", "registry.example/private:1")
    (node.root / "a" / "auth.json").write_text('{"auths": {}}')
    proc = subprocess.run(["bash", str(script)], env=node.env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    auth = node.root / "a" / "auth.json"
    assert node.pulls() == [f"--quiet --authfile {auth} registry.example/private:1"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(image=st.text(st.characters(codec="utf-8", exclude_characters="\x00\n\r"), min_size=1))
def test_no_image_name_changes_what_the_shell_runs(tmp_path: Path, image: str) -> None:
    assume("missing" not in image)
    if image.startswith("-"):  # the runtimes would take it for an option
        with pytest.raises(InvalidPodSpec, match="is not an image reference"):
            Node(tmp_path / "refused").script("a", image)
        return
    node = Node(tmp_path / f"n{len(list(tmp_path.iterdir()))}")
    assert node.run("a", image, "IfNotPresent") == 0
    assert node.pulls() == [f"--quiet {image}"]
    lock = reference_file_name(image)
    assert sorted(os.listdir(node.root / "locks")) == [f"{lock}.last", f"{lock}.lock"]
