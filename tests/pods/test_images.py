"""Images: pull secrets -> registry logins and the files the runtimes read, the job's pull
records -> the container's waiting state and the events (each once), and the script's
``pull_image`` loop run for real under bash with a stand-in image step."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius.models import Pod
from mobius.pods.env import PodRefs
from mobius.pods.images import (
    AUTH_FILE,
    SHELL_PULL,
    PullAuth,
    RegistryLogin,
    auth_files,
    image_events,
    image_location,
    image_waiting,
    pull_auth,
)
from mobius.pods.records import ContainerRecord, PodRecord, PullRecord, parse_pull, pod_record
from mobius.pods.status import JobView, pod_status
from mobius.pods.volumes import pod_needs

IMAGE = "registry.example/team/app:1"


def make_pod(*secrets: str, image: str = IMAGE, init: str | None = None) -> Pod:
    raw: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {
            "restartPolicy": "Never",
            "imagePullSecrets": [{"name": s} for s in secrets],
            "containers": [{"name": "c", "image": image}],
        },
    }
    if init:
        raw["spec"]["initContainers"] = [{"name": "i", "image": init}]
    return msgspec.convert(raw, Pod)


def docker_config(auths: dict[str, dict[str, str]]) -> bytes:
    return json.dumps({"auths": auths}).encode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- imagePullSecrets ---------------------------------------------------------------------------


def test_pull_secrets_are_fetched_with_the_pods_references() -> None:
    assert pod_needs(make_pod("regcred", "other")).secrets == frozenset({"regcred", "other"})


def test_logins_from_docker_config_secrets() -> None:
    refs = PodRefs(
        secrets={
            "json": {
                ".dockerconfigjson": docker_config(
                    {
                        "https://index.docker.io/v1/": {"auth": b64("hub:pw:with:colons")},
                        "registry.example": {"username": "robot", "password": "s3cret"},
                    }
                )
            },
            "legacy": {
                ".dockercfg": json.dumps({"old.example:5000": {"auth": b64("o:p")}}).encode()
            },
        },
        secret_types={
            "json": "kubernetes.io/dockerconfigjson",
            "legacy": "kubernetes.io/dockercfg",
        },
    )
    auth = pull_auth(make_pod("json", "legacy"), refs)
    assert auth.logins == (
        RegistryLogin("docker.io", "hub", "pw:with:colons"),
        RegistryLogin("registry.example", "robot", "s3cret"),
        RegistryLogin("old.example:5000", "o", "p"),
    )
    assert not auth.warnings
    assert "s3cret" not in repr(auth)


def test_missing_and_unusable_pull_secrets_only_warn() -> None:
    refs = PodRefs(secrets={"opaque": {"k": b"v"}}, secret_types={"opaque": "Opaque"})
    auth = pull_auth(make_pod("gone", "opaque"), refs)
    assert auth.logins == ()
    assert [w.reason for w in auth.warnings] == ["FailedToRetrieveImagePullSecret"] * 2
    assert auth.warnings[0].message == (
        "Unable to retrieve some image pull secrets (gone); attempting to pull the image may "
        "not succeed."
    )
    assert "opaque (type Opaque, needs kubernetes.io/dockerconfigjson)" in auth.warnings[1].message


@pytest.mark.parametrize(
    ("image", "location"),
    [
        ("busybox", "docker.io/library/busybox"),
        ("busybox:1.36", "docker.io/library/busybox"),
        ("team/app", "docker.io/team/app"),
        ("index.docker.io/team/app:1", "docker.io/team/app"),
        ("localhost:5000/a/b:tag", "localhost:5000/a/b"),
        ("registry.example/a@sha256:abc", "registry.example/a"),
        ("registry.example:443/a/b:2", "registry.example:443/a/b"),
    ],
)
def test_image_locations_follow_docker_defaults(image: str, location: str) -> None:
    assert image_location(image) == location


def test_the_most_specific_login_wins() -> None:
    auth = PullAuth(
        logins=(
            RegistryLogin("*.example", "wild", "w"),
            RegistryLogin("registry.example", "host", "h"),
            RegistryLogin("registry.example/team", "team", "t"),
            RegistryLogin("docker.io", "hub", "d"),
        )
    )

    def who(image: str) -> str | None:
        login = auth.login_for(image)
        return login.username if login else None

    assert who("registry.example/team/app:1") == "team"
    assert who("registry.example/teamwork/app") == "host"  # a path prefix ends at a "/"
    assert who("mirror.example/app") == "wild"
    assert who("deep.mirror.example/app") is None  # "*" is one label
    assert who("registry.example:5000/app") is None  # the port must match
    assert who("busybox") == "hub"
    assert who("quay.io/app") is None


def test_auth_files_for_podman_and_apptainer() -> None:
    auth = PullAuth(
        logins=(
            RegistryLogin("*.example", "wild", "w"),
            RegistryLogin("registry.example", "robot", "s3 cret"),
        )
    )
    files = auth_files(make_pod(init="mirror.example/tools:1"), auth)
    assert json.loads(files[AUTH_FILE]) == {
        "auths": {
            "registry.example": {"auth": b64("wild:w")},  # first wins, as Kubernetes tries them
            "mirror.example": {"auth": b64("wild:w")},
        }
    }
    assert files["pull-auth/c"] == b"robot\0s3 cret\0"
    assert files["pull-auth/i"] == b"wild\0w\0"
    assert auth_files(make_pod(), PullAuth()) == {}


# --- what the job reports -----------------------------------------------------------------------


def pulled(state: str, attempt: int = 1, message: str = "", **times: int) -> PullRecord:
    return PullRecord(state, attempt, "2026-01-01T00:00:00Z", message=message, **times)


def test_pull_records_are_read_back() -> None:
    files = {
        "c/c.pull": "pulled 1 2026-01-01T00:00:00Z 1500000 4000000\n",
        "c/i.pull": "failed 2 2026-01-01T00:00:00Z Error: no such host: x y\n",
        "c/j.pull": "bogus 1 x\n",
    }
    record = pod_record(files)
    assert record.containers["c"].pull == pulled("pulled", pull_us=1500000, total_us=4000000)
    assert record.containers["i"].pull == pulled("failed", 2, "Error: no such host: x y")
    assert record.containers["j"].pull is None
    assert parse_pull("pulled 1 t 12") is None


def test_waiting_reasons_as_the_kubelet_shows_them() -> None:
    c = make_pod().spec.containers[0]
    assert image_waiting(c, None) is None
    assert image_waiting(c, pulled("pulling")) is None  # ContainerCreating
    assert image_waiting(c, pulled("failed", 1, "Error: x")) == {
        "reason": "ErrImagePull",
        "message": "Error: x",
    }
    assert image_waiting(c, pulled("pulling", 2)) == {
        "reason": "ImagePullBackOff",
        "message": f'Back-off pulling image "{IMAGE}"',
    }
    assert image_waiting(c, pulled("failed", 3, "Error: x")) == {
        "reason": "ImagePullBackOff",
        "message": f'Back-off pulling image "{IMAGE}": ErrImagePull: Error: x',
    }
    assert image_waiting(c, pulled("absent")) == {
        "reason": "ErrImageNeverPull",
        "message": f'Container image "{IMAGE}" is not present with pull policy of Never',
    }
    for done in ("pulled", "present", "kept"):
        assert image_waiting(c, pulled(done)) is None


def status_with(pull: PullRecord | None, *, init: bool = False) -> dict[str, Any]:
    pod = make_pod(init="busybox" if init else None)
    name = "i" if init else "c"
    record = PodRecord(
        node="n1",
        pod_ip="10.0.0.2",
        started_at="2026-01-01T00:00:00Z",
        containers={name: ContainerRecord(pull=pull)},
    )
    return pod_status(
        pod,
        job=JobView(job_id="7", state="RUNNING"),
        record=record,
        submitted=True,
        now="2026-01-01T00:00:01Z",
    )


def test_a_pod_waiting_for_its_image_is_pending_not_failed() -> None:
    st = status_with(pulled("failed", 1, "Error: manifest unknown"))
    assert st["phase"] == "Pending"
    (c,) = st["containerStatuses"]
    assert c["state"] == {
        "waiting": {"reason": "ErrImagePull", "message": "Error: manifest unknown"}
    }
    back = status_with(pulled("failed", 2, "Error: manifest unknown"))
    assert back["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    init = status_with(pulled("absent"), init=True)
    assert init["phase"] == "Pending"
    assert init["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    assert status_with(pulled("pulling"))["phase"] == "Running"  # as before: ContainerCreating


def events(*records: PullRecord | None) -> list[tuple[str, str, str]]:
    """The events over a sequence of reads of the container's pull record."""
    pod = make_pod()
    out = []
    old = PodRecord()
    for pull in records:
        new = PodRecord(containers={"c": ContainerRecord(pull=pull)} if pull else {})
        out += [(e.type, e.reason, e.message) for e in image_events(pod, old, new)]
        old = new
    return out


def test_a_pull_is_reported_as_the_kubelet_reports_it() -> None:
    assert events(pulled("pulling"), pulled("pulled", pull_us=1_234_000, total_us=1_240_000)) == [
        ("Normal", "Pulling", f'Pulling image "{IMAGE}"'),
        (
            "Normal",
            "Pulled",
            f'Successfully pulled image "{IMAGE}" in 1.234s (1.24s including waiting)',
        ),
    ]
    # Seen only once it was done: Pulling still comes first.
    assert [r for _, r, _ in events(pulled("pulled", pull_us=900_000, total_us=900_000))] == [
        "Pulling",
        "Pulled",
    ]
    assert events(pulled("pulled", pull_us=812_000, total_us=812_000))[1][2].endswith(" in 812ms")
    assert events(pulled("present")) == [
        ("Normal", "Pulled", f'Container image "{IMAGE}" already present on machine')
    ]


def test_a_failing_pull_is_reported_once_however_long_it_fails() -> None:
    got = events(
        pulled("pulling"),
        pulled("failed", 1, "Error: no such host"),
        pulled("pulling", 2),
        pulled("failed", 2, "Error: no such host"),
        pulled("pulling", 3),
        pulled("failed", 3, "Error: no such host"),
        pulled("pulled", 4, pull_us=2_000_000, total_us=2_000_000),
    )
    assert got == [
        ("Normal", "Pulling", f'Pulling image "{IMAGE}"'),
        ("Warning", "Failed", f'Failed to pull image "{IMAGE}": Error: no such host'),
        ("Normal", "BackOff", f'Back-off pulling image "{IMAGE}"'),
        ("Normal", "Pulled", f'Successfully pulled image "{IMAGE}" in 2s'),
    ]
    # Missed reads change nothing: each reason once.
    assert [
        r for _, r, _ in events(pulled("failed", 3, "Error"), pulled("failed", 4, "Error"))
    ] == [
        "Pulling",
        "Failed",
        "BackOff",
    ]
    assert events(pulled("absent"), pulled("absent", 2)) == [
        (
            "Warning",
            "ErrImageNeverPull",
            f'Container image "{IMAGE}" is not present with pull policy of Never',
        )
    ]


# --- pull_image, run for real -------------------------------------------------------------------


def harness(tmp_path: Path, step: str) -> Path:
    """A script with the job's helpers, SHELL_PULL and ``pull_image c step``."""
    script = tmp_path / "pull.sh"
    script.write_text(
        "\n".join(
            [
                "set -u",
                f"CTL={tmp_path}/ctl",
                'mkdir -p "$CTL/c"',
                "now() { date -u +%Y-%m-%dT%H:%M:%SZ; }",
                'put() { printf \'%s\\n\' "$2" >"$CTL/$1.tmp" && mv -f "$CTL/$1.tmp" "$CTL/$1"; }',
                *SHELL_PULL.splitlines(),
                step,
                "trap 'put stopping x' TERM",
                "pull_image c step & wait $!; rc=$?",
                "while kill -0 $! 2>/dev/null; do wait $!; rc=$?; done",
                'echo "rc=$rc"',
            ]
        )
        + "\n"
    )
    return script


def record(tmp_path: Path) -> PullRecord | None:
    try:
        return parse_pull((tmp_path / "ctl" / "c" / "c.pull").read_text().strip())
    except FileNotFoundError:
        return None


def test_a_pulled_image_is_recorded_with_its_duration(tmp_path: Path) -> None:
    script = harness(tmp_path, 'step() { pulling; sleep 0.2; echo "pulled 200000"; }')
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert out.stdout == "rc=0\n", out.stderr
    got = record(tmp_path)
    assert got is not None
    assert (got.state, got.attempt, got.pull_us) == ("pulled", 1, 200000)
    assert got.total_us is not None
    assert got.total_us >= 200000


def test_a_failed_pull_is_retried_until_the_pod_stops(tmp_path: Path) -> None:
    step = (
        "step() { echo 'Trying to pull...' >&2; printf 'Error: bad\\tthing\\n\\n' >&2; return 1; }"
    )
    proc = subprocess.Popen(
        ["bash", str(harness(tmp_path, step))], stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while (got := record(tmp_path)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert got == PullRecord("failed", 1, got.at, message="Error: bad thing")
    proc.send_signal(signal.SIGTERM)  # the script's trap writes ctl/stopping
    out, _ = proc.communicate(timeout=30)  # a hang guard: the back-off checks every second
    assert out == "rc=1\n"


@settings(max_examples=25, deadline=None)
@given(message=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=60))
def test_no_pull_message_changes_what_the_shell_runs(tmp_path_factory: Any, message: str) -> None:
    tmp_path = tmp_path_factory.mktemp("pull")
    (tmp_path / "said").write_text(message)
    step = f"step() {{ cat {tmp_path}/said >&2; echo kept; }}"
    out = subprocess.run(
        ["bash", str(harness(tmp_path, step))], capture_output=True, text=True, timeout=30
    )
    assert out.stdout == "rc=0\n"
    got = record(tmp_path)
    assert got is not None
    assert got.state == "kept"
    lines = [ln for ln in message.replace("\r", "\n").splitlines() if ln.strip()]
    assert "\n" not in got.message
    if not lines:
        assert got.message == ""
