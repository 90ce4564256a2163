"""Probes and lifecycle hooks: rendered, validated, and run for real under bash.

The job scripts run with stand-ins for ``podman`` and ``apptainer`` whose containers are processes
of this machine (podman itself is exercised by tests/e2e/test_probes.py): ``run`` writes its PID
where the runtime would and runs the container's script with bash, ``exec`` runs its command here,
``stop`` and ``pod stop`` send TERM. Control files are read back the way the poller reads them,
and turned into statuses and events with the same pure functions. Waits are hang guards only.
"""

from __future__ import annotations

import http.server
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from shlex import quote
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius.errors import InvalidPodSpec
from mobius.models import Pod
from mobius.pods.probes import SHELL_PROBES, ContainerEvent, record_events, started_and_ready
from mobius.pods.records import PodRecord, pod_record
from mobius.pods.script import render_job
from mobius.pods.status import JobView, pod_status
from mobius.runtime import Apptainer, Podman, Runtime
from mobius.slurm.polling import read_ctl

NOW = "2026-01-01T00:00:10Z"

FAKE_PODMAN = r"""#!/bin/bash
# Containers are processes here: `run` writes its PID (--pidfile) and runs its last argument with
# bash; `exec NAME CMD...` runs CMD; `stop -t N NAME` and `pod stop -t N` TERM the containers and
# KILL them after N seconds. Every call is recorded NUL-separated in $RECORD_DIR.
call="$RECORD_DIR/$(date +%s%N)-$$"
printf '%s\0' "$@" >"$call.tmp" && mv "$call.tmp" "$call"
stop() {
  local pid= i
  read -r pid <"$RECORD_DIR/$1.container" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < $2 * 10; i++)); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
}
while [[ ${1:-} == --* ]]; do shift; done
case $1 in
run)
  name= pidfile=
  while [ $# -gt 1 ]; do
    case $1 in --name) name=$2; shift ;; --pidfile) pidfile=$2; shift ;; esac
    shift
  done
  echo $$ >"$RECORD_DIR/$name.container"
  echo $$ >"$pidfile"
  exec bash -c "$1"
  ;;
exec) shift 2; exec "$@" ;;
stop) stop "$4" "$3" ;;
pod)
  if [ "$2" = stop ]; then
    for f in "$RECORD_DIR"/*.container; do
      [ -e "$f" ] && stop "$(basename "$f" .container)" "$4" &
    done
    wait
  fi
  ;;
inspect) echo 127.0.0.1 ;;
esac
exit 0
"""

FAKE_APPTAINER = r"""#!/bin/bash
# Records the call (argv NUL-separated, and its environment), then runs what follows the image
# (an argument ending in .sif) here: the container's command, or an exec probe's.
call="$RECORD_DIR/$(date +%s%N)-$$"
printf '%s\0' "$@" >"$call.tmp" && mv "$call.tmp" "$call"
env -0 >"$call.env"
while [ $# -gt 0 ] && [[ $1 != *.sif ]]; do shift; done
shift
exec "$@"
"""


class Node:
    """A folder with a stand-in runtime binary on PATH and its call records."""

    def __init__(self, root: Path, binary: str, text: str) -> None:
        self.root = root
        bindir, self.record = root / "bin", root / "record"
        bindir.mkdir(parents=True)
        self.record.mkdir()
        (bindir / binary).write_text(text)
        (bindir / binary).chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{bindir}:{os.environ['PATH']}",
            "RECORD_DIR": str(self.record),
        }

    def calls(self, word: str) -> list[list[str]]:
        """Recorded argv holding ``word``, oldest first."""
        found = []
        for f in sorted(self.record.iterdir()):
            if f.suffix or not f.name[0].isdigit():
                continue
            argv = [a.decode() for a in f.read_bytes().split(b"\0")[:-1]]
            if word in argv:
                found.append(argv)
        return found

    def environments(self, word: str) -> list[dict[str, str]]:
        envs = []
        for f in sorted(self.record.iterdir()):
            if f.suffix or not f.name[0].isdigit() or word.encode() not in f.read_bytes():
                continue
            entries = Path(f"{f}.env").read_bytes().split(b"\0")[:-1]
            envs.append(dict(e.decode().split("=", 1) for e in entries))
        return envs


@pytest.fixture
def podman(tmp_path: Path) -> Node:
    return Node(tmp_path / "node", "podman", FAKE_PODMAN)


@pytest.fixture
def apptainer(tmp_path: Path) -> Node:
    return Node(tmp_path / "node", "apptainer", FAKE_APPTAINER)


def make_pod(*containers: dict[str, Any], **spec: Any) -> Pod:
    raw = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "0000-uid"},
        "spec": {"restartPolicy": "Never", "containers": list(containers), **spec},
    }
    return msgspec.convert(raw, Pod)


def container(script: str = "sleep 1000", **fields: Any) -> dict[str, Any]:
    """A container of the stand-ins: ``script`` runs with bash on this machine."""
    return {"name": "c", "image": "busybox", "args": [script], **fields}


def forever(order: Path | None = None) -> str:
    """A container script that runs until TERM, then appends ``term`` to ``order``."""
    on_term = f"echo term >>{quote(str(order))}; exit 143" if order else "exit 143"
    return f"trap {quote(on_term)} TERM; while :; do sleep 0.1; done"


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 60) -> Any:
    """A hang guard, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Job:
    """A pod's job script running under bash, and what the kubelet would read of it."""

    def __init__(self, pod: Pod, root: Path, node: Node, runtime: Runtime | None = None) -> None:
        self.pod = pod
        self.pod_dir = root / "pod"
        self.pod_dir.mkdir()
        runtime = runtime or Podman(global_flags=("--log-level=error",))
        script = root / "job.sh"
        script.write_text(render_job(pod, pod_dir=str(self.pod_dir), runtime=runtime).script)
        with open(root / "job.out", "wb") as out:  # as sbatch --output
            self.proc = subprocess.Popen(
                ["bash", str(script)],
                env=node.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.last = PodRecord()
        self.events: list[ContainerEvent] = []

    def record(self) -> PodRecord:
        """The control files as the poller reads them; events for what changed since."""
        record = pod_record(read_ctl(self.pod_dir / "ctl"))
        self.events += record_events(self.last, record)
        self.last = record
        return record

    def status(self) -> dict[str, Any]:
        return pod_status(
            self.pod,
            job=JobView(job_id="7", state="RUNNING"),
            record=self.record(),
            submitted=True,
            now=NOW,
        )

    def container(self, name: str = "c") -> dict[str, Any]:
        return next(s for s in self.status()["containerStatuses"] if s["name"] == name)

    def file(self, name: str) -> str:
        try:
            return (self.pod_dir / "ctl" / "c" / name).read_text().strip()
        except FileNotFoundError:
            return ""

    def stop(self) -> int:
        """TERM, as ``scancel --signal=TERM --batch`` sends it; the script's exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    started: list[Job] = []
    yield started
    for job in started:
        job.kill()


def run_job(jobs: list[Job], pod: Pod, root: Path, node: Node, **kw: Any) -> Job:
    job = Job(pod, root, node, **kw)
    jobs.append(job)
    return job


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


# --------------------------------------------------------------------------------------------
# Rendering


EVERYTHING = container(
    ports=[{"name": "http", "containerPort": 8080}],
    startupProbe={"tcpSocket": {"port": 8080}, "failureThreshold": 30, "periodSeconds": 1},
    livenessProbe={"exec": {"command": ["test", "-e", "/tmp/x y"]}},
    readinessProbe={
        "httpGet": {
            "port": "http",
            "path": "/ready",
            "scheme": "HTTPS",
            "httpHeaders": [{"name": "X-A", "value": "b c'$(x)"}],
        }
    },
    lifecycle={
        "postStart": {"httpGet": {"port": 8080, "host": "::1"}},
        "preStop": {"sleep": {"seconds": 2}},
    },
)


@pytest.mark.parametrize("runtime", [Podman(), Apptainer()], ids=["podman", "apptainer"])
@pytest.mark.parametrize("host_network", [False, True])
def test_scripts_with_probes_and_hooks_are_valid_bash(
    tmp_path: Path, runtime: Runtime, host_network: bool
) -> None:
    side = {"name": "side", "image": "busybox"}
    pod = make_pod(EVERYTHING, side, hostNetwork=host_network)
    script = tmp_path / "job.sh"
    script.write_text(render_job(pod, pod_dir="/p", runtime=runtime).script)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "app_0_watch() { watch_container c app_0 1 1 " in text
    assert "app_1_watch" not in text  # the sidecar has nothing to watch
    assert 'pre_stop "$GRACE" c app_0' in text


def test_pods_without_probes_get_no_prober() -> None:
    text = render_job(make_pod(container()), pod_dir="/p", runtime=Podman()).script
    assert "watch_container" not in text
    assert "pre_stop" not in text


def test_named_ports_and_timing_fields_are_rendered() -> None:
    text = render_job(
        make_pod(EVERYTHING, terminationGracePeriodSeconds=7), pod_dir="/p", runtime=Podman()
    ).script
    assert "'startup 0 1 1 1 30 7' 'liveness 0 10 1 1 3 7' 'readiness 0 10 1 1 3 7'" in text
    assert "http_get \"${POD_IP}\" 8080 /ready HTTPS X-A 'b c'\"'\"'$(x)'" in text
    assert "http_get ::1 8080 / HTTP;" in text


@pytest.mark.parametrize(
    ("fields", "field", "why"),
    [
        ({"livenessProbe": {"grpc": {"port": 9000}}}, ".livenessProbe.grpc", "gRPC"),
        ({"readinessProbe": {}}, ".readinessProbe", "a handler is required"),
        (
            {"readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}}},
            ".readinessProbe",
            "only one handler",
        ),
        (
            {"readinessProbe": {"httpGet": {"port": "web"}}},
            ".readinessProbe.httpGet.port",
            "no port named 'web'",
        ),
        ({"readinessProbe": {"tcpSocket": {"port": 0}}}, ".readinessProbe.tcpSocket.port", "0"),
        (
            {"readinessProbe": {"tcpSocket": {"port": 1, "host": "a/b"}}},
            ".readinessProbe.tcpSocket.host",
            "host name",
        ),
        (
            {"readinessProbe": {"httpGet": {"port": 1, "scheme": "FTP"}}},
            ".readinessProbe.httpGet.scheme",
            "HTTP or HTTPS",
        ),
        (
            {"readinessProbe": {"httpGet": {"port": 1, "path": "/a b"}}},
            ".readinessProbe.httpGet.path",
            "spaces",
        ),
        (
            {"readinessProbe": {"httpGet": {"port": 1, "httpHeaders": [{"name": "A B"}]}}},
            ".readinessProbe.httpGet.httpHeaders[0].name",
            "header name",
        ),
        (
            {
                "readinessProbe": {
                    "httpGet": {"port": 1, "httpHeaders": [{"name": "A", "value": "x\r\nB: y"}]}
                }
            },
            ".readinessProbe.httpGet.httpHeaders[0].value",
            "control characters",
        ),
        (
            {"readinessProbe": {"exec": {"command": []}}},
            ".readinessProbe.exec.command",
            "required",
        ),
        (
            {"livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 0}},
            ".livenessProbe.periodSeconds",
            "at least 1",
        ),
        (
            {"livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}},
            ".livenessProbe.successThreshold",
            "must be 1",
        ),
        (
            {"lifecycle": {"preStop": {"tcpSocket": {"port": 80}}}},
            ".lifecycle.preStop.tcpSocket",
            "use exec",
        ),
    ],
)
def test_invalid_probes_and_hooks_name_the_field(
    fields: dict[str, Any], field: str, why: str
) -> None:
    with pytest.raises(InvalidPodSpec) as info:
        render_job(make_pod(container(**fields)), pod_dir="/p", runtime=Podman())
    assert info.value.field == "spec.containers[0]" + field
    assert why in str(info.value)


# --------------------------------------------------------------------------------------------
# One attempt, run under bash: what reaches the runtime or the server is exactly the pod's text


def definition(text: str, fn: str) -> str:
    """The generated function ``fn`` of script ``text`` (quoted words may span lines)."""
    start = text.index(f"\n{fn}() ") + 1
    return text[start : text.index("\napp_0_", start)]


def attempt(text: str, fn: str, *setup: str) -> subprocess.CompletedProcess[bytes]:
    """Run the generated ``fn`` (one probe attempt) of script ``text`` under bash."""
    line = definition(text, fn)
    harness = "\n".join(
        [
            "set -u",
            *SHELL_PROBES.splitlines(),
            "NETNS=()",
            "POD_IP=127.0.0.1",
            *setup,
            line,
            f"{fn} 5",
        ]
    )
    return subprocess.run(["bash", "-c", harness], capture_output=True, timeout=30, check=False)


hostile = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(command=st.lists(hostile, min_size=1, max_size=4))
def test_exec_probe_commands_reach_the_runtime_unchanged(command: list[str]) -> None:
    pod = make_pod(container(readinessProbe={"exec": {"command": command}}))
    printer = "printf '%s\\0' \"$@\""
    # podman: exec into the running container, by name.
    text = render_job(pod, pod_dir="/p", runtime=Podman()).script
    out = attempt(text, "app_0_readiness", f"PODMAN=(bash -c {quote(printer)} podman)")
    assert out.stdout.split(b"\0")[:-1] == [
        w.encode() for w in ("exec", "mobius-0000-uid-c", *command)
    ]
    # apptainer: a second exec of the same image, after it.
    text = render_job(pod, pod_dir="/p", runtime=Apptainer()).script
    out = attempt(
        text,
        "app_0_readiness",
        f"APPTAINER=(bash -c {quote(printer)} apptainer)",
        "RUN_FLAGS=()",
        "IMAGE_CACHE=/cache",
    )
    argv = out.stdout.split(b"\0")[:-1]
    assert argv[-len(command) :] == [w.encode() for w in command]
    assert argv[0] == b"exec"


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers GET with the status the test sets, keeping each request's path and headers."""

    status = 200
    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, dict(self.headers.items())))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[http.server.HTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def http_probe(port: int, **get: Any) -> str:
    pod = make_pod(container(readinessProbe={"httpGet": {"port": port, **get}}))
    return render_job(pod, pod_dir="/p", runtime=Podman()).script


def test_http_probe_speaks_http_1_1_as_the_kubelet_does(server: http.server.HTTPServer) -> None:
    port = server.server_address[1]
    Recorder.seen.clear()
    Recorder.status = 200
    text = http_probe(port, path="/healthz?x=1", httpHeaders=[{"name": "X-Token", "value": "a b"}])
    assert attempt(text, "app_0_readiness").returncode == 0
    ((path, headers),) = Recorder.seen
    assert path == "/healthz?x=1"
    assert headers["X-Token"] == "a b"
    assert headers["Host"] == f"127.0.0.1:{port}"
    assert headers["User-Agent"].startswith("kube-probe/")
    Recorder.status = 302
    assert attempt(text, "app_0_readiness").returncode == 0  # 2xx and 3xx are success
    Recorder.status = 503
    failed = attempt(text, "app_0_readiness")
    assert failed.returncode == 1
    assert failed.stdout.decode().strip() == "HTTP probe failed with statuscode: 503"
    # A Host header of the pod's replaces the default.
    Recorder.seen.clear()
    Recorder.status = 200
    text = http_probe(port, httpHeaders=[{"name": "host", "value": "example.org"}])
    assert attempt(text, "app_0_readiness").returncode == 0
    assert Recorder.seen[0][1]["host"] == "example.org"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
        str.strip
    ),
    path=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
)
def test_http_probe_values_reach_the_server_unchanged(
    server: http.server.HTTPServer, value: str, path: str
) -> None:
    Recorder.seen.clear()
    Recorder.status = 200
    path = "/" + path.lstrip("/").replace("#", "")  # a fragment never reaches a server
    text = http_probe(
        server.server_address[1], path=path, httpHeaders=[{"name": "X-V", "value": value}]
    )
    assert attempt(text, "app_0_readiness").returncode == 0
    ((seen_path, headers),) = Recorder.seen
    assert seen_path == path
    # http.server decodes header bytes as Latin-1.
    assert headers["X-V"] == value.encode().decode("latin-1")


def test_network_probes_report_what_failed() -> None:
    nothing = subprocess.run(
        ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/1"], capture_output=True, check=False
    )
    assert nothing.returncode != 0  # nothing listens on port 1 here
    text = http_probe(1)
    failed = attempt(text, "app_0_readiness")
    assert failed.returncode == 1
    assert failed.stdout.decode().strip() == (
        'Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect failed'
    )
    pod = make_pod(container(livenessProbe={"tcpSocket": {"port": 1}}))
    text = render_job(pod, pod_dir="/p", runtime=Podman()).script
    failed = attempt(text, "app_0_liveness")
    assert failed.stdout.decode().strip() == "dial tcp 127.0.0.1:1: connect failed"


def test_tcp_probe_succeeds_when_the_port_is_open(server: http.server.HTTPServer) -> None:
    pod = make_pod(container(livenessProbe={"tcpSocket": {"port": server.server_address[1]}}))
    text = render_job(pod, pod_dir="/p", runtime=Podman()).script
    assert attempt(text, "app_0_liveness").returncode == 0


def test_https_probe_through_openssl(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=pod",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=True,
    )  # fmt: skip
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        Recorder.seen.clear()
        Recorder.status = 204
        text = http_probe(httpd.server_address[1], scheme="HTTPS", path="/tls")
        done = attempt(text, "app_0_readiness")
        assert done.returncode == 0, done
        assert Recorder.seen[0][0] == "/tls"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_attempt_is_cut_at_timeout_seconds() -> None:
    pod = make_pod(container(readinessProbe={"exec": {"command": ["sleep", "100"]}}))
    text = render_job(pod, pod_dir="/p", runtime=Podman()).script
    line = definition(text, "app_0_readiness")
    harness = "\n".join(
        [
            *SHELL_PROBES.splitlines(),
            "PODMAN=(bash -c 'exec \"${@:3}\"' podman)",
            line,
            "out=$(mktemp)",
            'app_0_readiness 1 >"$out" 2>&1',
            'said "$out" $? 1',
        ]
    )
    out = subprocess.run(["bash", "-c", harness], capture_output=True, timeout=30, check=True)
    assert out.stdout.decode().strip() == "timed out after 1s"


# --------------------------------------------------------------------------------------------
# Whole jobs


def test_readiness_follows_the_probe(tmp_path: Path, podman: Node, jobs: list[Job]) -> None:
    flag = tmp_path / "ready"
    probe = {
        "exec": {"command": ["test", "-e", str(flag)]},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    pod = make_pod(container(forever(), readinessProbe=probe), {**container(), "name": "side"})
    job = run_job(jobs, pod, tmp_path, podman)
    wait_for("a failed readiness probe", lambda: job.file("c.probe"))
    st = job.status()
    assert st["phase"] == "Running"
    c = next(s for s in st["containerStatuses"] if s["name"] == "c")
    side = next(s for s in st["containerStatuses"] if s["name"] == "side")
    assert (c["state"].keys(), c["started"], c["ready"]) == ({"running"}, True, False)
    assert side["ready"] is True  # no probe: ready while running
    ready = conditions(st)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    assert ready["message"] == "containers with unready status: [c]"
    assert ContainerEvent("c", "Warning", "Unhealthy", "Readiness probe failed: exit status 1") in (
        job.events
    )
    flag.touch()
    wait_for("ready", lambda: job.container()["ready"])
    st = job.status()
    assert conditions(st)["Ready"]["status"] == "True"
    assert conditions(st)["ContainersReady"]["status"] == "True"
    assert conditions(st)["Ready"]["lastTransitionTime"] == job.file("c.ready").split()[1]
    flag.unlink()  # two failures in a row (failureThreshold) make it unready again
    wait_for("unready", lambda: job.file("c.ready").startswith("false"))
    assert job.container()["ready"] is False
    assert job.container()["state"].keys() == {"running"}  # readiness never restarts it
    assert job.stop() == 143
    assert [run for run in podman.calls("exec") if run[-3:] == ["test", "-e", str(flag)]]


def test_liveness_failure_restarts_the_container(
    tmp_path: Path, podman: Node, jobs: list[Job]
) -> None:
    order, alive = tmp_path / "order", tmp_path / "alive"
    alive.touch()
    pod = make_pod(
        container(
            forever(order),
            livenessProbe={
                "exec": {"command": ["test", "-e", str(alive)]},
                "periodSeconds": 1,
                "failureThreshold": 2,
            },
            lifecycle={"preStop": {"exec": {"command": ["sh", "-c", f"echo prestop >>{order}"]}}},
        ),
        restartPolicy="Always",
        terminationGracePeriodSeconds=5,
    )
    job = run_job(jobs, pod, tmp_path, podman)
    wait_for("the container to run", lambda: job.container()["state"].get("running"))
    alive.unlink()
    wait_for("a restart", lambda: job.container()["restartCount"] >= 1)
    assert order.read_text() == "prestop\nterm\n"  # the hook, then TERM, as the kubelet kills
    assert int(job.file("c.exit").split()[0]) == 143
    messages = [(e.reason, e.message) for e in job.events]
    assert ("Unhealthy", "Liveness probe failed: exit status 1") in messages
    assert ("Killing", "Container c failed liveness probe, will be restarted") in messages
    (stop, *_) = [run for run in podman.calls("stop") if "pod" not in run]
    assert stop[-4:-2] == ["stop", "-t"]
    assert stop[-1] == "mobius-0000-uid-c"
    assert 2 <= int(stop[-2]) <= 5  # what the preStop hook left of the grace period
    job.stop()


def test_the_startup_probe_holds_back_liveness_and_readiness(
    tmp_path: Path, podman: Node, jobs: list[Job]
) -> None:
    started = tmp_path / "started"
    pod = make_pod(
        container(
            forever(),
            startupProbe={
                "exec": {"command": ["test", "-e", str(started)]},
                "periodSeconds": 1,
                "failureThreshold": 1000,
            },
            livenessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1},
            readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
        ),
        restartPolicy="Never",
    )
    job = run_job(jobs, pod, tmp_path, podman)
    wait_for("two failed startup probes", lambda: job.record() and len(job.events) >= 2)
    c = job.container()
    assert (c["state"].keys(), c["started"], c["ready"]) == ({"running"}, False, False)
    assert {e.message for e in job.events} == {"Startup probe failed: exit status 1"}
    assert not job.file("c.ready")  # readiness waits too
    started.touch()
    # Started, then liveness (`false`, three times) kills it; restartPolicy Never ends the pod.
    assert job.proc.wait(timeout=60) == 143
    job.record()
    assert job.file("c.startup")
    assert job.file("c.ready").startswith("true")
    assert ("Killing", "Container c failed liveness probe, will be restarted") in [
        (e.reason, e.message) for e in job.events
    ]


def test_post_start_runs_before_the_container_counts_as_started(
    tmp_path: Path, podman: Node, jobs: list[Job]
) -> None:
    note = tmp_path / "note"
    script = f"until [ -e {note} ]; do sleep 0.1; done; cat {note}; {forever()}"
    pod = make_pod(
        container(
            script,
            lifecycle={
                "postStart": {"exec": {"command": ["sh", "-c", f"sleep 1; echo hooked >{note}"]}}
            },
        )
    )
    job = run_job(jobs, pod, tmp_path, podman)
    c = wait_for(
        "the container to run", lambda: (c := job.container())["state"].get("running") and c
    )
    done = job.last.containers["c"].started_probe_at is not None
    assert (c["started"], c["ready"]) == (done, done)  # not started while the hook runs
    wait_for("postStart to finish", lambda: job.file("c.startup"))
    assert (job.container()["started"], job.container()["ready"]) == (True, True)
    log = job.pod_dir / "logs" / "c" / "0.log"
    wait_for("what the hook wrote, in the log", lambda: " stdout F hooked\n" in log.read_text())
    assert job.stop() == 143


def test_a_failing_post_start_hook_kills_the_container(
    tmp_path: Path, podman: Node, jobs: list[Job]
) -> None:
    hook = {"exec": {"command": ["sh", "-c", "echo no config; exit 3"]}}
    pod = make_pod(container(forever(), lifecycle={"postStart": hook}))
    job = run_job(jobs, pod, tmp_path, podman)
    assert job.proc.wait(timeout=60) == 143
    job.record()
    assert job.events == [
        ContainerEvent("c", "Warning", "FailedPostStartHook", "PostStartHook failed: no config")
    ]
    assert not job.file("c.startup")


def test_pre_stop_runs_before_term_within_the_grace_period(
    tmp_path: Path, podman: Node, jobs: list[Job]
) -> None:
    order = tmp_path / "order"
    hook = {"exec": {"command": ["sh", "-c", f"echo prestop >>{order}; sleep 1000"]}}
    pod = make_pod(
        container(forever(order), lifecycle={"preStop": hook}),
        {**container(forever(order)), "name": "plain"},
        terminationGracePeriodSeconds=2,
    )
    job = run_job(jobs, pod, tmp_path, podman)
    wait_for("both containers to run", lambda: len(list(podman.record.glob("*.container"))) == 2)
    wait_for("c's process", lambda: job.file("c.pid"))
    assert job.stop() == 143  # a hook that never ends is cut at the grace period
    assert order.read_text() == "prestop\nterm\nterm\n"
    job.record()
    assert job.events == [
        ContainerEvent(
            "c", "Warning", "FailedPreStopHook", "PreStopHook failed: timed out after 2s"
        )
    ]
    # The sandbox got what was left of the grace period, at least 2 s.
    (pod_stop,) = podman.calls("stop")[-1:]
    assert pod_stop[-3:] == ["-t", "2", "mobius-0000-uid"]


def test_apptainer_probes_exec_beside_the_container_and_stop_it(
    tmp_path: Path, apptainer: Node, jobs: list[Job]
) -> None:
    alive = tmp_path / "alive"
    alive.touch()
    pod = make_pod(
        {
            "name": "c",
            "image": "/images/app.sif",
            "command": ["bash", "-c", forever()],
            "env": [{"name": "GREETING", "value": "hi"}],
            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
            "livenessProbe": {
                "exec": {"command": ["test", "-e", str(alive)]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        },
        restartPolicy="OnFailure",
    )
    runtime = Apptainer(image_cache=str(tmp_path / "cache"))
    job = run_job(jobs, pod, tmp_path, apptainer, runtime=runtime)
    wait_for("ready", lambda: job.container()["ready"])
    probes = [call for call in apptainer.calls("true")]
    assert probes[0][:2] == ["exec", "--cleanenv"]
    assert probes[0][-2:] == ["/images/app.sif", "true"]
    assert apptainer.environments("true")[0]["APPTAINERENV_GREETING"] == "hi"
    pid = int(job.file("c.pid"))
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"bash", b"-c"]
    alive.unlink()
    wait_for("a restart", lambda: job.container()["restartCount"] >= 1)
    assert int(job.file("c.exit").split()[0]) == 143
    assert job.stop() == 143


# --------------------------------------------------------------------------------------------
# Records, status and events, pure


def test_records_read_the_watchers_files() -> None:
    rec = pod_record(
        {
            "c/a.startup": "2026-01-01T00:00:02Z\n",
            "c/a.ready": "true 2026-01-01T00:00:03Z\n",
            "c/a.probe": "2026-01-01T00:00:01Z Startup probe failed: exit status 1\n",
            "c/a.event": "2026-01-01T00:00:04Z Killing Container a failed liveness probe\n",
            "c/b.ready": "maybe\n",
        }
    ).containers
    assert rec["a"].started_probe_at == "2026-01-01T00:00:02Z"
    assert (rec["a"].ready, rec["a"].ready_at) == (True, "2026-01-01T00:00:03Z")
    assert rec["a"].probe_failure == "2026-01-01T00:00:01Z Startup probe failed: exit status 1"
    assert rec["b"].ready is None


@pytest.mark.parametrize(
    ("fields", "files", "expected"),
    [
        ({}, {}, (True, True)),
        ({"readinessProbe": {"exec": {"command": ["x"]}}}, {}, (True, False)),
        ({"readinessProbe": {"exec": {"command": ["x"]}}}, {"ready": "false T"}, (True, False)),
        ({"readinessProbe": {"exec": {"command": ["x"]}}}, {"ready": "true T"}, (True, True)),
        ({"livenessProbe": {"exec": {"command": ["x"]}}}, {}, (True, True)),
        ({"startupProbe": {"exec": {"command": ["x"]}}}, {}, (False, False)),
        ({"startupProbe": {"exec": {"command": ["x"]}}}, {"startup": "T"}, (True, True)),
        ({"lifecycle": {"postStart": {"sleep": {"seconds": 1}}}}, {}, (False, False)),
        (
            {
                "startupProbe": {"exec": {"command": ["x"]}},
                "readinessProbe": {"exec": {"command": ["x"]}},
            },
            {"startup": "T"},
            (True, False),
        ),
    ],
)
def test_started_and_ready_as_the_kubelet_reports_them(
    fields: dict[str, Any], files: dict[str, str], expected: tuple[bool, bool]
) -> None:
    pod = make_pod(container(**fields))
    rec = pod_record(
        {"c/c.started": NOW, "c/c.pid": "4242", **{f"c/c.{k}": v for k, v in files.items()}}
    )
    assert started_and_ready(pod.spec.containers[0], rec.containers["c"]) == expected
    st = pod_status(
        pod, job=JobView(job_id="7", state="RUNNING"), record=rec, submitted=True, now=NOW
    )
    (c,) = st["containerStatuses"]
    assert (c["started"], c["ready"]) == expected
    assert conditions(st)["Ready"]["status"] == ("True" if expected[1] else "False")


def test_events_are_news_only() -> None:
    before = pod_record({"c/a.probe": "T1 Readiness probe failed: HTTP probe failed"})
    same = pod_record({"c/a.probe": "T1 Readiness probe failed: HTTP probe failed"})
    assert record_events(before, same) == []
    after = pod_record(
        {
            "c/a.probe": "T2 Liveness probe failed: timed out after 1s",
            "c/a.event": "T2 Killing Container a failed liveness probe, will be restarted",
            "c/b.event": "T2 Evil something",  # not a reason a watcher writes
        }
    )
    assert record_events(before, after) == [
        ContainerEvent("a", "Warning", "Unhealthy", "Liveness probe failed: timed out after 1s"),
        ContainerEvent(
            "a", "Normal", "Killing", "Container a failed liveness probe, will be restarted"
        ),
    ]
