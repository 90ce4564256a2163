"""What a running job tells about its pod: the control files the job script writes, read back.

The job script writes one small file per fact, atomically (write a temp file, then rename):

    ctl/node                  hostname of the node the job runs on
    ctl/pod.ip                the pod's IP
    ctl/pod.started           when the sandbox was up (RFC 3339)
    ctl/stopping              "<when> <kubelet|slurm>": the script got TERM and stops the pod
    ctl/c/<container>.started   when the container (last) started
    ctl/c/<container>.exit      "<exit code> <finished at>" of its last run
    ctl/c/<container>.restarts  how often it was restarted in place
    ctl/c/<container>.last      "<exit code> <finished at>" of the run before the last restart
    ctl/c/<container>.pid       the PID of the run's first process, once the runtime started it
    ctl/c/<container>.startup   when this run counted as started (postStart hook done, startup
                                probe passed); only containers with either have it
    ctl/c/<container>.ready     "<true|false> <when>": the readiness probe's verdict in this run
    ctl/c/<container>.probe     "<when> <message>": the last failed probe ("Liveness probe failed: ...")
    ctl/c/<container>.event     "<when> <reason> <message>": the last thing the kubelet reports as
                                an event (Killing, FailedPostStartHook, FailedPreStopHook)
    ctl/c/<container>.pull      "<state> <attempt> <when> ...": how getting its image went (see
                                :class:`PullRecord` and :mod:`mobius.pods.images`)

The container function removes ``.startup`` and ``.ready`` before each run (see
:mod:`mobius.pods.probes`).

The Slurm job may have left squeue long before Mobius looks (no accounting), so these files are
the job's own record of how it ended. Parsing them is pure; reading them is the poller's job.
"""

from __future__ import annotations

import msgspec

from mobius.errors import ParseError


class PullRecord(msgspec.Struct, frozen=True):
    """The last word of the job's image step for one container (``c/<name>.pull``)::

        pulling <attempt> <when>                       a pull started
        pulled  <attempt> <when> <pull µs> <total µs>  pulled (total: with the wait for the lock)
        present <attempt> <when>                       already on the node, nothing pulled
        kept    <attempt> <when> <message>             the pull failed; the stored image is used
        failed  <attempt> <when> <message>             the pull failed; retried after a back-off
        absent  <attempt> <when>                       not on the node, imagePullPolicy Never
    """

    state: str
    attempt: int = 1
    at: str | None = None
    pull_us: int | None = None
    total_us: int | None = None
    message: str = ""


_PULL_STATES = ("pulling", "pulled", "present", "kept", "failed", "absent")


def parse_pull(text: str) -> PullRecord | None:
    """A ``c/<name>.pull`` record; None for one that cannot be read."""
    parts = text.split(" ", 3)
    if len(parts) < 2 or parts[0] not in _PULL_STATES or not parts[1].isdigit():
        return None
    state, attempt = parts[0], int(parts[1])
    at = parts[2] if len(parts) > 2 else None
    rest = parts[3] if len(parts) > 3 else ""
    if state == "pulled":
        numbers = rest.split()
        if len(numbers) != 2 or not all(n.isdigit() for n in numbers):
            return None
        return PullRecord(state, attempt, at, int(numbers[0]), int(numbers[1]))
    return PullRecord(state, attempt, at, message=rest)


class ContainerRecord(msgspec.Struct, frozen=True):
    started_at: str | None = None
    exit_code: int | None = None
    finished_at: str | None = None
    restarts: int = 0
    last_exit_code: int | None = None  # the run before the last restart
    last_finished_at: str | None = None
    started_probe_at: str | None = None  # .startup: postStart done, startup probe passed
    ready: bool | None = None  # .ready: None until the readiness probe's first verdict
    ready_at: str | None = None
    probe_failure: str | None = None  # .probe, as written
    event: str | None = None  # .event, as written
    pull: PullRecord | None = None  # .pull
    pid_seen: bool = False  # .pid: the runtime started this run's process


class PodRecord(msgspec.Struct, frozen=True):
    node: str | None = None
    pod_ip: str | None = None
    started_at: str | None = None
    containers: dict[str, ContainerRecord] = {}
    stopped_by: str | None = None  # "kubelet" or "slurm": who sent the job script TERM


def parse_exit(text: str) -> tuple[int, str | None]:
    """``"<code> <finished-at>"`` -> (code, finished_at)."""
    parts = text.split()
    if not parts or not parts[0].lstrip("-").isdigit():
        raise ParseError("container exit record", text)
    return int(parts[0]), parts[1] if len(parts) > 1 else None


_KINDS = {
    "started": "started_at",
    "exit": "exit_code",
    "restarts": "restarts",
    "last": "last_exit_code",
    "startup": "started_probe_at",
    "ready": "ready",
    "probe": "probe_failure",
    "event": "event",
    "pull": "pull",
    "pid": "pid_seen",
}


def pod_record(files: dict[str, str]) -> PodRecord:
    """Build a PodRecord from ``{path under ctl/: content}`` (``"node"``, ``"c/app.exit"``).

    Unreadable records are skipped rather than failing the pod: a half-written file cannot occur
    (writes are renames), so garbage means a foreign file, and the job's Slurm state still rules.
    """
    fields: dict[str, dict[str, object]] = {}
    for name, raw in files.items():
        if not name.startswith("c/"):
            continue
        value = raw.strip()
        base, _, kind = name[2:].rpartition(".")
        if not base or kind not in _KINDS:
            continue
        entry = fields.setdefault(base, {})
        if kind == "started":
            entry["started_at"] = value or None
        elif kind in ("startup", "probe", "event"):
            entry[_KINDS[kind]] = value or None
        elif kind == "pull":
            entry["pull"] = parse_pull(value)
        elif kind == "pid":
            entry["pid_seen"] = bool(value)
        elif kind == "ready":
            verdict, _, when = value.partition(" ")
            if verdict in ("true", "false"):
                entry["ready"], entry["ready_at"] = verdict == "true", when or None
        elif kind in ("exit", "last"):
            try:
                code, finished = parse_exit(value)
            except ParseError:
                continue
            prefix = "" if kind == "exit" else "last_"
            entry[prefix + "exit_code"], entry[prefix + "finished_at"] = code, finished
        elif value.isdigit():
            entry["restarts"] = int(value)
    containers = {name: ContainerRecord(**f) for name, f in fields.items()}  # type: ignore[arg-type]
    stopping = files.get("stopping", "").split()
    return PodRecord(
        node=files.get("node", "").strip() or None,
        pod_ip=files.get("pod.ip", "").strip() or None,
        started_at=files.get("pod.started", "").strip() or None,
        containers=containers,
        stopped_by=stopping[1] if len(stopping) > 1 else None,
    )
