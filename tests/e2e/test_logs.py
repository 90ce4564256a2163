"""`kubectl logs` through the real API server: follow, tail, since, timestamps, previous, -c,
stderr; and the kubelet port refusing whoever the API server would refuse."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from mobius.controlplane.pki import issue_cert, load_cert_and_key
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


def _apply(
    stack: Stack, name: str, containers: list[dict[str, object]], restart: str = "Never"
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
        },
    }
    stack.kubectl("apply", "-f", "-", stdin=json.dumps(pod))


def _phase(stack: Stack, name: str) -> str:
    return stack.get_json("pod", name).get("status", {}).get("phase", "")


def _sh(name: str, script: str) -> dict[str, object]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script]}


TICKER = "for i in 1 2 3 4 5 6; do echo line $i; echo err $i >&2; sleep 1; done"


@pytest.fixture(scope="module")
def ticker(stack: Stack) -> str:
    _apply(stack, "ticker", [_sh("main", TICKER)])
    stack.wait_for("ticker to run", lambda: _phase(stack, "ticker") in ("Running", "Succeeded"))
    return "ticker"


def test_follow_streams_lines_as_they_come_and_ends_with_the_container(
    stack: Stack, ticker: str
) -> None:
    argv = [str(stack.kubectl_path), f"--kubeconfig={stack.kubeconfig}", "logs", "-f", ticker]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            first = proc.stdout.readline()
            assert first.startswith(("line", "err")), first
            assert proc.poll() is None, "kubectl logs -f ended before the container did"
            rest = proc.stdout.read()  # until kubectl ends: the container exited
            assert proc.wait(timeout=30) == 0, proc.stderr.read()
        finally:
            proc.kill()
    lines = (first + rest).splitlines()
    assert [x for x in lines if x.startswith("line")] == [f"line {i}" for i in range(1, 7)]
    assert [x for x in lines if x.startswith("err")] == [f"err {i}" for i in range(1, 7)]
    assert _phase(stack, ticker) in ("Running", "Succeeded")


def _finished(stack: Stack, name: str) -> None:
    stack.wait_for(f"{name} to finish", lambda: _phase(stack, name) in ("Succeeded", "Failed"))


def test_tail_timestamps_and_since(stack: Stack, ticker: str) -> None:
    _finished(stack, ticker)
    full = stack.kubectl("logs", ticker).splitlines()
    assert len(full) == 12
    assert sorted(stack.kubectl("logs", "--tail=2", ticker).splitlines()) == ["err 6", "line 6"]
    assert stack.kubectl("logs", "--tail=0", ticker) == ""
    stamped = stack.kubectl("logs", "--timestamps", ticker).splitlines()
    assert all(TIMESTAMP.match(x) for x in stamped), stamped
    assert [x.split(" ", 1)[1] for x in stamped] == full
    # --since-time: from the time of "line 4" on (kubectl sends whole seconds: compare to those).
    when = next(x.split(" ", 1)[0] for x in stamped if x.endswith(" line 4"))
    since = when.split(".")[0] + "Z"
    later = stack.kubectl("logs", f"--since-time={since}", ticker).splitlines()
    assert "line 4" in later
    assert "line 6" in later
    assert "line 1" not in later
    assert stack.kubectl("logs", "--since=1h", ticker).splitlines() == full
    # The first 7 bytes: "line 1" and its newline, or "err 1", its newline and the "l" of "line 1"
    # (the two streams of one moment may land in either order, as with containerd).
    assert stack.kubectl("logs", "--limit-bytes=7", ticker) in ("line 1\n", "err 1\nl")


def test_previous_shows_the_run_before_a_restart(stack: Stack, ticker: str) -> None:
    err = stack.kubectl("logs", "--previous", ticker, check=False)
    assert err == ""
    _apply(
        stack,
        "flaky",
        [_sh("main", 'echo "run $(date +%s%N)"; echo oops >&2; exit 1')],
        restart="OnFailure",
    )

    def previous() -> str:
        return stack.kubectl("logs", "--previous", "flaky", check=False)

    before = previous()
    assert before == ""
    prev = stack.wait_for("a restart of flaky", previous, timeout=60)
    current = stack.wait_for(
        "the second run's output",
        lambda: (c := stack.kubectl("logs", "flaky")) != prev and c,
        timeout=60,
    )
    # Two readers, one per stream: lines of stdout and stderr written together may swap.
    assert sorted(prev.splitlines())[0] == "oops"
    assert sorted(prev.splitlines())[1].startswith("run ")
    assert any(x.startswith("run ") for x in current.splitlines())
    assert current != prev
    stack.kubectl("delete", "pod", "flaky", "--wait=false")


def test_container_flag_and_stderr(stack: Stack) -> None:
    _apply(stack, "duo", [_sh("a", "echo from-a"), _sh("b", "echo from-b >&2; printf no-newline")])
    _finished(stack, "duo")
    assert stack.kubectl("logs", "duo", "-c", "a") == "from-a\n"
    assert stack.kubectl("logs", "duo", "-c", "b") == "from-b\nno-newline"
    assert (
        "not valid"
        in subprocess.run(
            [
                str(stack.kubectl_path),
                f"--kubeconfig={stack.kubeconfig}",
                "logs",
                "duo",
                "-c",
                "zzz",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stderr
    )


# --------------------------------------------------------------------------------------------
# The kubelet port itself


def _kubelet_url(stack: Stack) -> str:
    node = stack.get_json("node", "mobius")
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    return f"https://127.0.0.1:{port}"


def _pki(stack: Stack) -> Path:
    return stack.home / "controlplane" / "pki"


def _tls(stack: Stack, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(_pki(stack) / "ca.crt"))
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_no_credentials_get_401(stack: Stack) -> None:
    url = _kubelet_url(stack) + "/containerLogs/default/duo/a"
    r = httpx.get(url, verify=_tls(stack))
    assert r.status_code == 401
    assert r.text == "Unauthorized"
    r = httpx.get(url, verify=_tls(stack), headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401


def test_certificate_of_a_user_without_rights_gets_403(stack: Stack, tmp_path: Path) -> None:
    pki = _pki(stack)
    ca = load_cert_and_key(pki / "ca.crt", pki / "ca.key")
    nobody = issue_cert(
        ca, common_name="nobody", organizations=["staff"], server=False, client=True
    )
    (tmp_path / "c.crt").write_bytes(nobody.cert_pem)
    (tmp_path / "c.key").write_bytes(nobody.key_pem)
    r = httpx.get(
        _kubelet_url(stack) + "/containerLogs/default/duo/a",
        verify=_tls(stack, tmp_path / "c.crt", tmp_path / "c.key"),
    )
    assert r.status_code == 403
    assert r.text == "Forbidden (user=nobody, verb=get, resource=nodes, subresource=proxy)"


def test_service_account_token_needs_nodes_proxy(stack: Stack) -> None:
    stack.kubectl("create", "serviceaccount", "log-reader", check=False)
    token = stack.kubectl("create", "token", "log-reader").strip()
    url = _kubelet_url(stack) + "/containerLogs/default/duo/a"
    ca = _tls(stack)
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.get(url, verify=ca, headers=headers)
    assert r.status_code == 403
    assert r.text.startswith("Forbidden (user=system:serviceaccount:default:log-reader, verb=get")
    stack.kubectl(
        "create", "clusterrole", "node-proxy", "--verb=get", "--resource=nodes/proxy", check=False
    )
    stack.kubectl(
        "create",
        "clusterrolebinding",
        "log-reader-proxy",
        "--clusterrole=node-proxy",
        "--serviceaccount=default:log-reader",
        check=False,
    )
    deadline = time.monotonic() + 30
    while (
        r := httpx.get(url, verify=ca, headers=headers)
    ).status_code == 403 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert r.status_code == 200
    assert r.text == "from-a\n"
