"""Images end to end: a burst of pods on one uncached image pulls it once (the jobs' podman_image
under flock), a pull reported as the kubelet reports it (Pulling, Pulled with its duration), an
image that cannot be pulled keeps its pod waiting (ErrImagePull, then ImagePullBackOff) while
other pods run, and imagePullSecrets reach podman as an auth file.

No registry is reachable here, so for this module only a recording stand-in ``podman`` goes
first on the PATH of the kubelet's jobs (``Stack.path_first``; tests only). It appends each
``pull`` to a record file and implements it by tagging the local busybox image
(``docker.io/library/busybox:latest``, built by ``make image``) under the requested name, or
fails like an unreachable registry for a name containing "missing"; every other command goes
to the real podman, which runs the pods.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mobius.runtime.base import reference_file_name
from mobius.runtime.podman import DEFAULT_PULL_LOCKS
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

STAND_IN = r"""#!/bin/bash
# A stand-in podman for the e2e tests (see tests/e2e/test_images.py): pulls are recorded and
# faked from the local busybox image; everything else is the real podman.
real={real}
record={record}
globals=()
while [ $# -gt 0 ] && [[ $1 == -* ]]; do globals+=("$1"); shift; done
[ "${{1:-}}" = pull ] || exec "$real" "${{globals[@]}}" "$@"
shift
image=${{!#}}
printf '%s\n' "$*" >>"$record"
sleep 2  # as a registry would take a while: pods arriving meanwhile wait for this pull
case $image in
*missing*)
  echo "Error: initializing source docker://$image: reading manifest 1 in $image: manifest unknown" >&2
  exit 125
  ;;
esac
exec "$real" "${{globals[@]}}" tag docker.io/library/busybox:latest "$image"
"""


@pytest.fixture(scope="module")
def pulls(stack: Stack) -> Iterator[Path]:
    """Install the stand-in for this module; the file it records pulls in."""
    real = shutil.which("podman")
    assert real, "podman is not on PATH"
    record = stack.home / "pulls.log"
    record.touch()
    fake = stack.path_first / "podman"
    fake.write_text(STAND_IN.format(real=real, record=record))
    fake.chmod(0o755)
    try:
        yield record
    finally:
        fake.unlink()


def _pulled(record: Path, image: str) -> list[str]:
    return [line for line in record.read_text().splitlines() if line.split()[-1] == image]


def _forget(image: str) -> None:
    """Remove the test's image from podman's store, and its pull lock from the user's folder."""
    subprocess.run(["podman", "rmi", "--force", image], capture_output=True, check=False)
    locks = Path(DEFAULT_PULL_LOCKS.replace("$HOME", str(Path.home())))
    for suffix in (".lock", ".last"):
        (locks / (reference_file_name(image) + suffix)).unlink(missing_ok=True)


def _pod(name: str, image: str, command: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"test": "images"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, "command": ["sh", "-c", command]}],
            **spec,
        },
    }


def _status(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get_json("pod", name).get("status", {})  # type: ignore[no-any-return]


def _phase(stack: Stack, name: str) -> str | None:
    return _status(stack, name).get("phase")


def _events(stack: Stack, name: str) -> list[dict[str, Any]]:
    listed = stack.get_json("events", f"--field-selector=involvedObject.name={name}")
    return listed["items"]  # type: ignore[no-any-return]


def _delete(stack: Stack, *what: str) -> None:
    stack.kubectl("delete", *what, "--grace-period=1", "--wait=false", check=False)


def test_a_burst_of_pods_on_an_uncached_image_pulls_it_once(stack: Stack, pulls: Path) -> None:
    image = f"registry.example/burst/app:{uuid.uuid4().hex[:8]}"  # IfNotPresent: a fixed tag
    names = [f"img-burst-{i}" for i in range(20)]
    stack.apply(*(_pod(n, image, "echo ok") for n in names))
    try:

        def done() -> int:
            phases = [_phase(stack, n) for n in names]
            if "Failed" in phases:
                pytest.fail(f"a pod failed: {[_status(stack, n) for n in names]}")
            return phases.count("Succeeded") == len(names)

        stack.wait_for("the 20 pods to succeed", done, timeout=300, interval=2)
        assert _pulled(pulls, image) == [f"--quiet {image}"]
        assert {stack.kubectl("logs", n) for n in names} == {"ok\n"}
        pulled = [e["message"] for n in names for e in _events(stack, n) if e["reason"] == "Pulled"]
        assert len(pulled) == 20
        (fresh,) = [m for m in pulled if m.startswith("Successfully pulled")]
        assert re.fullmatch(
            rf'Successfully pulled image "{re.escape(image)}" in [0-9.]+m?s( \(.+ including waiting\))?',
            fresh,
        ), fresh
        present = f'Container image "{image}" already present on machine'
        assert pulled.count(present) == 19
        pulling = [n for n in names for e in _events(stack, n) if e["reason"] == "Pulling"]
        assert len(pulling) == 1
    finally:
        _delete(stack, "pods", "-l", "test=images")
        _forget(image)


def test_an_image_that_cannot_be_pulled_keeps_its_pod_waiting(stack: Stack, pulls: Path) -> None:
    image = "registry.example/missing/app:1"
    stack.apply(
        _pod("img-alive", "busybox", "trap 'exit 0' TERM; while :; do sleep 1; done"),
        _pod("img-missing", image, "echo never"),
    )
    try:

        def waiting() -> str | None:
            status = _status(stack, "img-missing")
            if status.get("phase") in ("Failed", "Succeeded"):
                pytest.fail(f"img-missing ended: {status}")
            (c,) = status.get("containerStatuses") or [{}]
            return c.get("state", {}).get("waiting", {}).get("reason")  # type: ignore[no-any-return]

        stack.wait_for("ErrImagePull", lambda: waiting() == "ErrImagePull", timeout=120)
        (c,) = _status(stack, "img-missing")["containerStatuses"]
        assert "manifest unknown" in c["state"]["waiting"]["message"]
        assert _phase(stack, "img-missing") == "Pending"
        # The job tries again after 10 s; from then on the kubelet says it backs off.
        stack.wait_for("ImagePullBackOff", lambda: waiting() == "ImagePullBackOff", timeout=120)
        (c,) = _status(stack, "img-missing")["containerStatuses"]
        assert c["state"]["waiting"]["message"].startswith(f'Back-off pulling image "{image}"')
        assert _phase(stack, "img-missing") == "Pending"
        assert _phase(stack, "img-alive") == "Running"
        assert len(_pulled(pulls, image)) >= 2
        reasons = [e["reason"] for e in _events(stack, "img-missing")]
        for reason in ("Pulling", "Failed", "BackOff"):
            assert reasons.count(reason) == 1, reasons
        (failed,) = [e for e in _events(stack, "img-missing") if e["reason"] == "Failed"]
        assert failed["type"] == "Warning"
        assert failed["message"].startswith(f'Failed to pull image "{image}": Error: ')
    finally:
        _delete(stack, "pod/img-alive")
        # Once its job has stopped (no pull attempt left to run), forget the image.
        stack.kubectl("delete", "pod/img-missing", "--grace-period=1", "--timeout=90s", check=False)
        _forget(image)


def test_pull_secrets_reach_podman_as_an_auth_file(stack: Stack, pulls: Path) -> None:
    image = f"registry.example/private/app:{uuid.uuid4().hex[:8]}"
    config = {"auths": {"registry.example": {"username": "robot", "password": "s3cret"}}}
    stack.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "img-regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json.dumps(config)},
        },
        _pod(
            "img-private",
            image,
            "echo ok",
            imagePullSecrets=[{"name": "img-regcred"}, {"name": "img-no-such-secret"}],
        ),
    )
    try:
        stack.wait_for(
            "img-private to succeed", lambda: _phase(stack, "img-private") == "Succeeded"
        )
        uid = stack.get_json("pod", "img-private")["metadata"]["uid"]
        auth = stack.home / "state" / "pods" / uid / "auth.json"
        (pulled,) = _pulled(pulls, image)
        assert pulled == f"--quiet --authfile {auth} {image}"
        assert stat.S_IMODE(auth.stat().st_mode) == 0o600
        entry = json.loads(auth.read_text())["auths"]["registry.example"]
        assert entry == {"auth": "cm9ib3Q6czNjcmV0"}  # robot:s3cret
        warnings = [
            e["message"]
            for e in _events(stack, "img-private")
            if e["reason"] == "FailedToRetrieveImagePullSecret"
        ]
        assert warnings == [
            "Unable to retrieve some image pull secrets (img-no-such-secret); attempting to "
            "pull the image may not succeed."
        ]
    finally:
        _delete(stack, "pod/img-private", "secret/img-regcred")
        _forget(image)
