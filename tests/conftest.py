"""Session fixtures: the whole Mobius stack, started the way users start it (``mobius up``).

The stack (etcd, kube-apiserver, kube-controller-manager, a private Slurm, the kubelet) runs as
one ``python -m mobius up`` child on private ports under a temp folder, and is stopped with
SIGTERM at the end of the session, after which no process of it may remain.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mobius.controlplane import free_port


class Stack:
    """A running ``mobius up``: its home folder, kubeconfig and a kubectl helper."""

    def __init__(self, home: Path, process: subprocess.Popen[bytes], log: Path):
        self.home = home
        self.process = process
        self.log = log
        self.kubeconfig = home / "kubeconfig"
        self.kubectl_path = home / "bin" / "kubectl"
        # First on the PATH of the kubelet and its jobs, empty: a test may put a stand-in there
        # for a program the jobs run (and must remove it when done).
        self.path_first = home / "path-first"

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None
    ) -> str:
        proc = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=stdin,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed: {proc.stderr}\n{self.log_tail()}"
            )
        return proc.stdout

    @property
    def slurm_env(self) -> dict[str, str]:
        """The environment for Slurm commands against the stack's private cluster."""
        return {
            **os.environ,
            "SLURM_CONF": str(self.home / "slurm" / "slurm.conf"),
            "PATH": os.environ["PATH"] + ":/usr/sbin",
        }

    def slurm(self, *argv: str) -> str:
        """Run a Slurm command against the stack's cluster; its stdout."""
        return subprocess.run(
            argv, capture_output=True, text=True, check=True, env=self.slurm_env, timeout=60
        ).stdout

    def jobs_by_name(self) -> dict[str, list[str]]:
        """Job name -> the ids of every job squeue still shows under it."""
        jobs: dict[str, list[str]] = {}
        for line in self.slurm(
            "squeue", "--noheader", "--states=all", "--format=%j|%i"
        ).splitlines():
            name, job_id = line.split("|")
            jobs.setdefault(name, []).append(job_id)
        return jobs

    def containers_running(self, pod: str) -> bool:
        """Whether the pod is Running with every container's process started (the kubelet's
        ``running`` state: exec and probes reach it from then on)."""
        status = self.get_json("pod", pod).get("status", {})
        states = [s.get("state", {}) for s in status.get("containerStatuses", [])]
        return (
            status.get("phase") == "Running"
            and bool(states)
            and all("running" in s for s in states)
        )

    def apply(self, *objects: dict) -> str:  # type: ignore[type-arg]
        """``kubectl apply`` of these objects, as one List."""
        items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        return self.kubectl("apply", "-f", "-", stdin=json.dumps(items))

    def kubelet_get(self, path: str) -> str:
        """GET ``path`` from the kubelet port as the cluster admin (a client certificate), the
        way metrics-server and Prometheus read a kubelet (the node's address is loopback here,
        which the API server's node proxy refuses to reach)."""
        node = self.get_json("node", "mobius")
        port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        pki = self.home / "controlplane" / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        with httpx.Client(verify=ctx, timeout=60) as client:
            resp = client.get(f"https://127.0.0.1:{port}{path}")
        assert resp.status_code == 200, resp.text
        return resp.text

    def get_json(self, *args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.kubectl("get", *args, "-o", "json"))  # type: ignore[no-any-return]

    def wait_for(self, what: str, predicate, timeout: float = 120, interval: float = 0.5):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """``mobius up`` on private ports; skipped only if the Kubernetes binaries are missing."""
    bin_dir = Path(os.environ.get("MOBIUS_KUBE_BIN", Path("~/.cache/mobius/bin").expanduser()))
    if not (bin_dir / "kube-apiserver").exists():
        pytest.fail(f"no kube-apiserver in {bin_dir}: run `make setup` first")
    # Short base folder: Unix socket paths (munge) must stay under 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="mobius-e2e-"))
    (home / "path-first").mkdir()
    log = home / "up.log"
    argv = [
        sys.executable,
        "-m",
        "mobius",
        "up",
        "--home",
        str(home),
        "--private-slurm",
        "--slurm-cpus",
        "32",
        "--stats-interval",  # kubectl top within seconds
        "2",
        "--slurm-gpus",  # counted only: for --gres jobs
        "4",
        "--apiserver-port",
        str(free_port()),
        "--kubelet-port",
        str(free_port()),
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "MOBIUS_KUBE_BIN": str(bin_dir),
                "PATH": f"{home / 'path-first'}:{os.environ['PATH']}",
            },
        )
    s = Stack(home, process, log)
    try:
        s.wait_for(
            "mobius up to be ready",
            lambda: (
                (process.poll() is None and "Mobius is up" in log.read_text(errors="replace"))
                or (
                    process.poll() is not None
                    and _raise(f"mobius up exited {process.returncode}\n{s.log_tail()}")
                )
            ),
            timeout=240,
        )
        yield s
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        leftovers = _processes_mentioning(str(home))
        described = {pid: _cmdline(pid) for pid in leftovers}
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
        assert not leftovers, f"processes left behind by mobius up: {described}"


def _raise(message: str) -> bool:
    raise AssertionError(message)


def _cmdline(pid: int) -> str:
    try:
        return (
            (Path("/proc") / str(pid) / "cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")
        )
    except OSError:
        return "?"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found
