"""kubectl exec, exec -it, cp, attach and port-forward into a pod that is a Slurm job, through
the real API server, once over SPDY (the API server translates kubectl's WebSocket) and once
over WebSocket (the node declares ExtendWebSocketsToKubelet and the API server passes it on)."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

POD = "exec-web"


@pytest.fixture(scope="module")
def pod(stack: Stack) -> Iterator[str]:
    stack.kubectl(
        "run", POD, "--image=busybox", "--restart=Never", "--",
        "sh", "-c", "mkdir -p /www && echo hello-from-pod >/www/index.html && exec httpd -f -p 8080 -h /www",
    )  # fmt: skip
    stack.wait_for(
        f"{POD} to run", lambda: stack.get_json("pod", POD)["status"].get("phase") == "Running"
    )
    yield POD
    # httpd runs as PID 1 and ignores TERM: a short grace period, then the kill.
    stack.kubectl("delete", "pod", POD, "--grace-period=1", "--wait=true", timeout=120)


def _proxied_to_kubelet(stack: Stack) -> int:
    metrics = stack.kubectl("get", "--raw", "/metrics")
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("apiserver_websocket_streaming_requests_total")
        and "proxied_to_kubelet" in line
    )


@pytest.fixture(params=["spdy", "websocket"])
def transport(request: pytest.FixtureRequest, stack: Stack, pod: str) -> Iterator[str]:
    features = '["ExtendWebSocketsToKubelet"]' if request.param == "websocket" else "null"
    patch = f'{{"status":{{"declaredFeatures":{features}}}}}'
    stack.kubectl("patch", "node", "mobius", "--subresource=status", "--type=merge", "-p", patch)
    before = _proxied_to_kubelet(stack)
    yield request.param
    after = _proxied_to_kubelet(stack)
    assert (after > before) == (request.param == "websocket"), "the API server took another path"
    stack.kubectl("patch", "node", "mobius", "--subresource=status", "--type=merge",
                  "-p", '{"status":{"declaredFeatures":null}}')  # fmt: skip


def _run(
    stack: Stack, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(stack.kubectl_path), f"--kubeconfig={stack.kubeconfig}", *args],
        capture_output=True, text=True, input=stdin, timeout=timeout, check=False,
    )  # fmt: skip


def test_exec_prints_the_hostname_and_exit_code(stack: Stack, pod: str, transport: str) -> None:
    done = _run(stack, "exec", pod, "--", "sh", "-c", "echo $HOSTNAME; echo to-stderr >&2; exit 7")
    assert done.returncode == 7, done.stderr
    assert done.stdout == f"{pod}\n"
    assert "to-stderr" in done.stderr
    assert "command terminated with exit code 7" in done.stderr
    three = _run(stack, "exec", pod, "--", "sh", "-c", "exit 3")
    assert three.returncode == 3
    assert "command terminated with exit code 3" in three.stderr


def test_stdin_round_trips(stack: Stack, pod: str, transport: str) -> None:
    data = "".join(f"line {i}\n" for i in range(20000))
    done = _run(stack, "exec", "-i", pod, "--", "cat", stdin=data)
    assert (done.returncode, done.stdout) == (0, data), done.stderr


def test_cp_both_ways(stack: Stack, pod: str, transport: str, tmp_path: Path) -> None:
    source = tmp_path / "up.bin"
    source.write_bytes(os.urandom(300_000))
    up = _run(stack, "cp", str(source), f"{pod}:/tmp/up.bin")
    assert up.returncode == 0, up.stderr
    back = tmp_path / "back.bin"
    down = _run(stack, "cp", f"{pod}:/tmp/up.bin", str(back))
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == source.read_bytes()


def _read(fd: int, until: bytes, timeout: float = 20) -> bytes:
    out, deadline = b"", time.monotonic() + timeout
    while until not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


def test_exec_it_is_a_terminal_that_follows_resizes(stack: Stack, pod: str, transport: str) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    kubectl = subprocess.Popen(
        ["setsid", "-c", str(stack.kubectl_path), f"--kubeconfig={stack.kubeconfig}", "exec", "-it", pod, "--", "sh"],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    try:
        _read(master, b"# ")
        os.write(master, b"stty size; tty\r")
        first = _read(master, b"/dev/pts")
        assert b"24 80" in first, first
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
        time.sleep(1)
        os.write(master, b"stty size\r")
        assert b"50 132" in _read(master, b"50 132"), "the resize did not reach the container"
        os.write(master, b"exit 4\r")
        assert b"command terminated with exit code 4" in _read(master, b"exit code 4")
        assert kubectl.wait(timeout=20) == 4
    finally:
        kubectl.kill()
        kubectl.wait()
        os.close(master)


def test_port_forward_reaches_the_pods_http_server(stack: Stack, pod: str, transport: str) -> None:
    forward = subprocess.Popen(
        [str(stack.kubectl_path), f"--kubeconfig={stack.kubeconfig}", "port-forward", f"pod/{pod}", ":8080"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()  # Forwarding from 127.0.0.1:<port> -> 8080
        assert line.startswith("Forwarding from 127.0.0.1:"), line
        local = int(line.split(":")[1].split()[0])
        for _ in range(3):  # one stream pair per connection, on one SPDY session
            response = httpx.get(f"http://127.0.0.1:{local}/index.html", timeout=20)
            assert (response.status_code, response.text) == (200, "hello-from-pod\n")
    finally:
        forward.terminate()
        forward.wait(timeout=20)
        for pipe in (forward.stdout, forward.stderr):
            if pipe is not None:
                pipe.close()


def test_attach_streams_the_containers_output(stack: Stack, transport: str) -> None:
    name = f"ticker-{transport}"
    stack.kubectl("run", name, "--image=busybox", "--restart=Never", "--",
                  "sh", "-c", "sleep 2; for i in 1 2 3 4 5 6; do echo tick $i; sleep 1; done")  # fmt: skip
    stack.wait_for(
        f"{name} to run", lambda: stack.get_json("pod", name)["status"].get("phase") == "Running"
    )
    done = _run(stack, "attach", name, timeout=60)
    assert "tick 6" in done.stdout, (done.stdout, done.stderr)
    stack.kubectl("delete", "pod", name, "--wait=false")
