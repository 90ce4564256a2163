"""Container probes and lifecycle hooks: the kubelet's prober, run inside the pod's job. Pure.

Only the job can do this work: it runs on the compute node, next to the container and its
network, while the kubelet may be on another host. So the job script (:mod:`mobius.pods.script`)
gets, for each app container with probes or hooks, a *watcher*: a bash function the container's
function starts in the background before each run and stops after it. The watcher

* waits for the container's process (the runtime writes its PID to ``ctl/c/<name>.pid``), so
  that image pulls do not count against ``initialDelaySeconds``;
* runs the ``postStart`` hook; a failure stops the container (event FailedPostStartHook);
* runs the probes on their own schedules with the kubelet's rules: liveness and readiness wait
  for the startup probe; ``successThreshold``/``failureThreshold`` consecutive results flip the
  verdict; a startup or liveness probe that fails ``failureThreshold`` times in a row stops the
  container (``preStop`` hook first, then the runtime's stop within the grace period), and the
  container's restart loop restarts it per ``restartPolicy``, so ``restartCount`` rises;
* writes what it learns as control files (:mod:`mobius.pods.records`): ``.startup``, ``.ready``
  on changes only, ``.probe`` at each failure and ``.event``, which the poller turns into the
  container's ``started``/``ready`` and into Events (Unhealthy, Killing, Failed*Hook).

One attempt is a command run under ``timeout`` (``timeoutSeconds``):

* exec: the runtime's exec into the running container (``podman exec``; for Apptainer a second
  ``apptainer exec`` of the same image, env and binds, see :mod:`mobius.runtime.apptainer`);
* httpGet and tcpSocket: from the job, to the pod's IP (or ``host``), in plain bash (``/dev/tcp``
  and a small HTTP/1.1 request writer; HTTPS through ``openssl s_client`` on the node), inside
  ``NETNS`` (rootless podman's network namespace) - images need no wget or nc.

``preStop`` hooks also run when the pod stops (the script's TERM trap), all together, within the
grace period; what is left of it (at least 2 s, as the kubelet gives) goes to stopping the
containers. gRPC probes are refused with a message naming the field.

Every value from the pod reaches the shell as one quoted word (:func:`shlex.quote`); numbers
are rendered from ints; names that become shell identifiers are ours (``app_0``).
"""

from __future__ import annotations

import re
from shlex import quote

import msgspec

from mobius.errors import InvalidPodSpec
from mobius.models.core import Container, HTTPGetAction, LifecycleHandler, Probe
from mobius.pods.records import ContainerRecord, PodRecord
from mobius.runtime.base import ContainerRun, Runtime, RunVar, join_text, shell_word

__all__ = [
    "SHELL_PROBES",
    "ContainerEvent",
    "container_functions",
    "library",
    "pre_stop_call",
    "record_events",
    "started_and_ready",
    "watched",
]

KINDS = ("startup", "liveness", "readiness")

# The generic part, once per script. See the module notes; each function says what it does.
SHELL_PROBES = r"""# --- Probes and lifecycle hooks (mobius.pods.probes) ---
# running NAME: whether container NAME's process runs (its runtime wrote ctl/c/NAME.pid).
running() {
  local pid=
  { read -r pid || [ -n "$pid" ]; } <"$CTL/c/$1.pid" 2>/dev/null && [ -n "$pid" ] && [ -d "/proc/$pid" ]
}
# nap SECONDS: sleep in the background, so that a trapped TERM is handled at once.
nap() { sleep "$1" & nap=$!; wait "$nap"; nap=; }
idle() { while :; do nap 3600; done; }
# said FILE STATUS LIMIT: why an attempt failed, on one printable line: what it printed, else
# its exit status (124 and 137: timeout ended it after LIMIT seconds).
said() {
  local LC_ALL=C text=
  case $2 in 124|137) echo "timed out after ${3}s"; return ;; esac
  read -r -N 300 text <"$1"
  text=${text//[^[:print:]]/ }
  text=${text%"${text##*[! ]}"}
  echo "${text:-exit status $2}"
}
# hook NAME FN KIND LIMIT REASON: lifecycle hook FN_KIND of container NAME within LIMIT seconds
# (0: no limit); a failure is recorded as event REASON with what the hook said.
hook() {
  local out rc
  out=$(mktemp "${TMPDIR:-/tmp}/mobius-hook.XXXXXX") || return 1
  "${2}_$3" "$4" >"$out" 2>&1 </dev/null
  rc=$?
  [ "$rc" -eq 0 ] || put "c/$1.event" "$(now) $5 ${5#Failed} failed: $(said "$out" "$rc" "$4")"
  rm -f "$out"
  return "$rc"
}
# stop_one NAME FN GRACE PRESTOP: stop container NAME as the kubelet kills one container: its
# preStop hook first (when PRESTOP is 1), then the runtime's stop (FN_kill), GRACE seconds in all.
stop_one() {
  local end=$((SECONDS + $3))
  [ "$4" = 1 ] && hook "$1" "$2" pre_stop $(($3 > 0 ? $3 : 1)) FailedPreStopHook
  "${2}_kill" $((end - SECONDS > 2 ? end - SECONDS : 2))
}
# pre_stop GRACE [NAME FN]...: the preStop hooks of the running containers, together, within
# GRACE seconds; sets STOP_IN, what is left for stopping them (at least 2 s, as the kubelet gives).
pre_stop() {
  local end=$((SECONDS + $1)) limit=$(($1 > 0 ? $1 : 1)) pid
  local -a pids=()
  shift
  while [ $# -ge 2 ]; do
    if running "$1"; then hook "$1" "$2" pre_stop "$limit" FailedPreStopHook & pids+=($!); fi
    shift 2
  done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
  done
  STOP_IN=$((end - SECONDS > 2 ? end - SECONDS : 2))
}
# watch_container NAME FN POSTSTART PRESTOP [PROBE]...: the kubelet's work beside container NAME
# while it runs (its function starts this before each run and stops it after). Once its
# process runs: the postStart hook FN_post_start (when POSTSTART is 1; a failure stops the
# container), then the probes, each "KIND DELAY PERIOD TIMEOUT SUCCESS FAILURE GRACE" with one
# attempt being FN_KIND TIMEOUT (status 0: success; what it prints says why not). Liveness and
# readiness wait for the startup probe; a startup or liveness probe failing FAILURE times in a
# row stops the container (stop_one) and its restartPolicy decides what follows.
watch_container() {
  local c=$1 fn=$2 post=$3 pre=$4 spec k d p t s f g rc next started= ready=false job= nap= out=
  shift 4
  local -A due=() every=() limit=() need=() fails=() oks=() grace=() within=()
  trap '[ -n "$job" ] && { pkill -TERM -P "$job"; kill "$job"; } 2>/dev/null; [ -n "$nap" ] && kill "$nap" 2>/dev/null; [ -n "$out" ] && rm -f "$out"; exit 0' TERM
  out=$(mktemp "${TMPDIR:-/tmp}/mobius-probe.XXXXXX") || out=
  until running "$c"; do nap 0.5; done
  for spec in "$@"; do
    read -r k d p t s f g <<<"$spec"
    due[$k]=$((SECONDS + d)) every[$k]=$p within[$k]=$t need[$k]=$s limit[$k]=$f grace[$k]=$g
    fails[$k]=0 oks[$k]=0
  done
  if [ "$post" = 1 ]; then
    hook "$c" "$fn" post_start 0 FailedPostStartHook & job=$!
    wait "$job"; rc=$? job=
    if [ "$rc" -ne 0 ]; then
      stop_one "$c" "$fn" "$GRACE" "$pre" & job=$!
      wait "$job"; job=
      idle
    fi
  fi
  if [ -z "${due[startup]:-}" ]; then
    started=1
    [ "$post" = 1 ] && put "c/$c.startup" "$(now)"
  fi
  while :; do
    next=
    for k in startup liveness readiness; do
      [ -n "${due[$k]:-}" ] || continue
      if [ "$k" = startup ]; then [ -z "$started" ] || continue; elif [ -z "$started" ]; then continue; fi
      if [ "$SECONDS" -ge "${due[$k]}" ]; then
        due[$k]=$((SECONDS + every[$k]))
        "${fn}_$k" "${within[$k]}" >"${out:-/dev/null}" 2>&1 </dev/null & job=$!
        wait "$job"; rc=$? job=
        if [ "$rc" -eq 0 ]; then
          fails[$k]=0 oks[$k]=$((oks[$k] + 1))
          if [ "$k" = startup ]; then
            started=1
            put "c/$c.startup" "$(now)"
          elif [ "$k" = readiness ] && [ "$ready" = false ] && [ "${oks[$k]}" -ge "${need[$k]}" ]; then
            ready=true
            put "c/$c.ready" "true $(now)"
          fi
        else
          oks[$k]=0 fails[$k]=$((fails[$k] + 1))
          put "c/$c.probe" "$(now) ${k^} probe failed: $(said "${out:-/dev/null}" "$rc" "${within[$k]}")"
          if [ "${fails[$k]}" -ge "${limit[$k]}" ]; then
            if [ "$k" != readiness ]; then
              put "c/$c.event" "$(now) Killing Container $c failed $k probe, will be restarted"
              stop_one "$c" "$fn" "${grace[$k]}" "$pre" & job=$!
              wait "$job"; job=
              idle
            elif [ "$ready" = true ]; then
              ready=false
              put "c/$c.ready" "false $(now)"
            fi
          fi
        fi
      fi
      if [ -z "$next" ] || [ "${due[$k]}" -lt "$next" ]; then next=${due[$k]}; fi
    done
    [ -n "$next" ] || idle
    [ "$next" -le "$SECONDS" ] || nap $((next - SECONDS))
  done
}
# http_get HOST PORT PATH SCHEME [NAME VALUE]...: one GET as the kubelet's HTTP probe sends it;
# status 0 for a 2xx or 3xx answer. Plain bash over /dev/tcp; HTTPS through openssl s_client.
http_get() {
  local host=$1 port=$2 path=$3 scheme=$4 addr=$1 line= code fd named= agent=1 accept=1
  shift 4
  [[ $host == *:* ]] && addr="[$host]"
  local url="${scheme,,}://$addr:$port$path"
  local -a head=("GET $path HTTP/1.1")
  while [ $# -ge 2 ]; do
    case ${1,,} in host) named=1 ;; user-agent) agent= ;; accept) accept= ;; esac
    head+=("$1: $2")
    shift 2
  done
  [ -n "$named" ] || head+=("Host: $addr:$port")
  [ -z "$agent" ] || head+=("User-Agent: kube-probe/mobius")
  [ -z "$accept" ] || head+=("Accept: */*")
  head+=("Connection: close" "")
  if [ "$scheme" = HTTPS ]; then
    if ! command -v openssl >/dev/null; then
      echo "Get \"$url\": HTTPS probes need openssl on the node"
      return 1
    fi
    line=$(printf '%s\r\n' "${head[@]}" | openssl s_client -quiet -connect "$addr:$port" 2>/dev/null | head -n 1)
  else
    if ! { exec {fd}<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
      echo "Get \"$url\": dial tcp $addr:$port: connect failed"
      return 1
    fi
    printf '%s\r\n' "${head[@]}" >&"$fd"
    IFS= read -r line <&"$fd"
    exec {fd}>&-
  fi
  line=${line%$'\r'}
  code=${line#* }
  code=${code%% *}
  case $code in
  [23][0-9][0-9]) return 0 ;;
  [0-9][0-9][0-9]) echo "HTTP probe failed with statuscode: $code" ;;
  *) echo "Get \"$url\": malformed HTTP response ${line:0:60}" ;;
  esac
  return 1
}
# tcp_open HOST PORT: whether a TCP connection opens (the tcpSocket probe).
tcp_open() {
  local addr=$1 fd
  [[ $1 == *:* ]] && addr="[$1]"
  if ! { exec {fd}<>"/dev/tcp/$1/$2"; } 2>/dev/null; then
    echo "dial tcp $addr:$2: connect failed"
    return 1
  fi
  exec {fd}>&-
}
# Network attempts run as `bash -c "$PROBE_LIB" http_get|tcp_open ARGS...` under timeout.
PROBE_LIB="trap '' PIPE"$'\n'"$(declare -f http_get tcp_open)"$'\n''"$0" "$@"'"""

_HOST = re.compile(r"^[A-Za-z0-9._:%-]+$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PATH_BAD = re.compile(r"[\x00-\x20\x7f]")


def watched(c: Container) -> bool:
    """Whether the container needs a watcher (it has a probe or a postStart/preStop hook)."""
    life = c.lifecycle
    return (
        c.startup_probe is not None
        or c.liveness_probe is not None
        or c.readiness_probe is not None
        or (life is not None and (life.post_start is not None or life.pre_stop is not None))
    )


def _has_pre_stop(c: Container) -> bool:
    return c.lifecycle is not None and c.lifecycle.pre_stop is not None


def library(runtime: Runtime, *, host_network: bool) -> list[str]:
    """The shell functions every watcher uses, and ``NETNS`` for network probes."""
    return [*SHELL_PROBES.splitlines(), *runtime.probe_network(host_network=host_network)]


def pre_stop_call(containers: list[tuple[str, Container]]) -> str | None:
    """The TERM trap's call running the preStop hooks of ``(function, container)`` pairs, or
    None when none has one. It sets ``STOP_IN``."""
    pairs = [f"{quote(c.name)} {fn}" for fn, c in containers if _has_pre_stop(c)]
    return f'pre_stop "$GRACE" {" ".join(pairs)}' if pairs else None


def _port(port: int | str, c: Container, field: str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, str) and not port.isdigit():
        for p in c.ports:
            if p.name == port:
                return p.container_port
        raise InvalidPodSpec(field, f"the container has no port named {port!r}")
    number = int(port)
    if not 0 < number < 65536:
        raise InvalidPodSpec(field, f"{number} is not a port number (1-65535)")
    return number


def _host(host: str, field: str) -> str:
    """``host`` as one shell word, the pod's IP when empty."""
    if not host:
        return shell_word(join_text(RunVar("POD_IP")))
    bare = host.removeprefix("[").removesuffix("]")
    if not _HOST.match(bare):
        raise InvalidPodSpec(field, f"{host!r} is not a host name or IP address")
    return quote(bare)


def _http(action: HTTPGetAction, c: Container, field: str) -> str:
    """``bash -c "$PROBE_LIB" http_get ...`` words for an httpGet handler."""
    scheme = action.scheme.upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise InvalidPodSpec(f"{field}.scheme", f"{action.scheme!r} is not HTTP or HTTPS")
    path = action.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    if _PATH_BAD.search(path):
        raise InvalidPodSpec(f"{field}.path", f"{action.path!r} holds spaces or control characters")
    words = [
        "http_get",
        _host(action.host, f"{field}.host"),
        str(_port(action.port, c, f"{field}.port")),
        quote(path),
        scheme,
    ]
    for i, h in enumerate(action.http_headers):
        where = f"{field}.httpHeaders[{i}]"
        if not _TOKEN.match(h.name):
            raise InvalidPodSpec(f"{where}.name", f"{h.name!r} is not an HTTP header name")
        if _CONTROL.search(h.value):
            raise InvalidPodSpec(f"{where}.value", "a header value cannot hold control characters")
        words += [quote(h.name), quote(h.value)]
    return '"${NETNS[@]}" bash -c "$PROBE_LIB" ' + " ".join(words)


def _command(
    handler: Probe | LifecycleHandler,
    *,
    c: Container,
    run: ContainerRun,
    runtime: Runtime,
    sandbox: str,
    field: str,
) -> str:
    """The words of one attempt of ``handler`` (run under ``timeout`` by the caller)."""
    kinds = [
        name
        for name in ("exec", "http_get", "tcp_socket", "grpc", "sleep")
        if getattr(handler, name, None) is not None
    ]
    if not kinds:
        raise InvalidPodSpec(field, "a handler is required: exec, httpGet or tcpSocket")
    if len(kinds) > 1:
        raise InvalidPodSpec(field, "only one handler may be given")
    if handler.exec is not None:
        command = tuple(handler.exec.command)
        if not command:
            raise InvalidPodSpec(f"{field}.exec.command", "a command is required")
        if any("\0" in w for w in command):
            raise InvalidPodSpec(f"{field}.exec.command", "a command cannot hold NUL bytes")
        return runtime.exec_command(sandbox=sandbox, container=run, command=command)
    if handler.http_get is not None:
        return _http(handler.http_get, c, f"{field}.httpGet")
    if isinstance(handler, Probe):
        if handler.tcp_socket is not None:
            port = _port(handler.tcp_socket.port, c, f"{field}.tcpSocket.port")
            host = _host(handler.tcp_socket.host, f"{field}.tcpSocket.host")
            return f'"${{NETNS[@]}}" bash -c "$PROBE_LIB" tcp_open {host} {port}'
        raise InvalidPodSpec(
            f"{field}.grpc",
            "gRPC probes are not supported: use an exec probe (e.g. grpc_health_probe) "
            "or a tcpSocket probe",
        )
    if handler.sleep is not None:
        return f"sleep {max(0, int(handler.sleep.seconds))}"
    raise InvalidPodSpec(
        f"{field}.tcpSocket", "tcpSocket is not a lifecycle handler the kubelet runs: use exec"
    )


def _timing(probe: Probe, kind: str, field: str, grace: int) -> str:
    """``KIND DELAY PERIOD TIMEOUT SUCCESS FAILURE GRACE`` for the watcher."""
    numbers = {
        "initialDelaySeconds": (probe.initial_delay_seconds, 0),
        "periodSeconds": (probe.period_seconds, 1),
        "timeoutSeconds": (probe.timeout_seconds, 1),
        "successThreshold": (probe.success_threshold, 1),
        "failureThreshold": (probe.failure_threshold, 1),
    }
    for name, (value, least) in numbers.items():
        if value < least:
            raise InvalidPodSpec(f"{field}.{name}", f"must be at least {least}, not {value}")
    if kind != "readiness" and probe.success_threshold != 1:
        raise InvalidPodSpec(f"{field}.successThreshold", f"must be 1 for a {kind} probe")
    own = probe.termination_grace_period_seconds
    return " ".join(
        str(int(n))
        for n in (
            probe.initial_delay_seconds,
            probe.period_seconds,
            probe.timeout_seconds,
            probe.success_threshold,
            probe.failure_threshold,
            grace if own is None else max(0, own),
        )
    )


def container_functions(
    fn: str,
    c: Container,
    run: ContainerRun,
    runtime: Runtime,
    *,
    sandbox: str,
    grace: int,
    field: str,
) -> list[str]:
    """The shell functions of ``c``'s watcher, named ``<fn>_*``: one per probe and hook (one
    attempt, given its time limit), ``<fn>_kill GRACE`` and ``<fn>_watch``; [] without any."""
    if not watched(c):
        return []

    def attempt(name: str, handler: Probe | LifecycleHandler, where: str) -> str:
        cmd = _command(handler, c=c, run=run, runtime=runtime, sandbox=sandbox, field=where)
        return f'{fn}_{name}() {{ timeout -k 1 "$1" {cmd}; }}'

    lines: list[str] = []
    specs: list[str] = []
    for kind in KINDS:
        probe: Probe | None = getattr(c, f"{kind}_probe")
        if probe is None:
            continue
        where = f"{field}.{kind}Probe"
        lines.append(attempt(kind, probe, where))
        specs.append(quote(f"{kind} {_timing(probe, kind, where, grace)}"))
    post = pre = False
    if (life := c.lifecycle) is not None:
        if post := life.post_start is not None:
            lines.append(attempt("post_start", life.post_start, f"{field}.lifecycle.postStart"))
        if pre := life.pre_stop is not None:
            lines.append(attempt("pre_stop", life.pre_stop, f"{field}.lifecycle.preStop"))
    kill = runtime.stop_container(sandbox=sandbox, container=run, grace='"$1"')
    lines += [
        f"{fn}_kill() {{ {kill}; }}",
        f"{fn}_watch() {{ watch_container {quote(c.name)} {fn} {int(post)} {int(pre)} {' '.join(specs)}; }}",
    ]
    return lines


def started_and_ready(c: Container, rec: ContainerRecord) -> tuple[bool, bool]:
    """``started`` and ``ready`` of a running container, as the kubelet reports them: started
    once its postStart hook is done and its startup probe passed; ready once started and, with a
    readiness probe, once that probe says so."""
    gated = c.startup_probe is not None or (
        c.lifecycle is not None and c.lifecycle.post_start is not None
    )
    started = not gated or rec.started_probe_at is not None
    return started, started and (c.readiness_probe is None or rec.ready is True)


class ContainerEvent(msgspec.Struct, frozen=True):
    """An Event the kubelet would send about one of the pod's containers."""

    container: str
    type: str  # Normal or Warning
    reason: str
    message: str


_EVENT_REASONS = frozenset({"Killing", "FailedPostStartHook", "FailedPreStopHook"})
_NO_CONTAINER = ContainerRecord()


def record_events(old: PodRecord, new: PodRecord) -> list[ContainerEvent]:
    """The events for what the job's watchers wrote between two reads of its control files:
    Unhealthy for a new probe failure, and Killing or Failed*Hook."""
    events: list[ContainerEvent] = []
    for name, rec in new.containers.items():
        before = old.containers.get(name, _NO_CONTAINER)
        if rec.probe_failure and rec.probe_failure != before.probe_failure:
            _, _, message = rec.probe_failure.partition(" ")
            events.append(ContainerEvent(name, "Warning", "Unhealthy", message))
        if rec.event and rec.event != before.event:
            parts = rec.event.split(" ", 2)
            if len(parts) == 3 and parts[1] in _EVENT_REASONS:
                kind = "Normal" if parts[1] == "Killing" else "Warning"
                events.append(ContainerEvent(name, kind, parts[1], parts[2]))
    return events
