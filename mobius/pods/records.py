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

The Slurm job may have left squeue long before Mobius looks (no accounting), so these files are
the job's own record of how it ended. Parsing them is pure; reading them is the poller's job.
"""

from __future__ import annotations

import msgspec

from mobius.errors import ParseError


class ContainerRecord(msgspec.Struct, frozen=True):
    started_at: str | None = None
    exit_code: int | None = None
    finished_at: str | None = None
    restarts: int = 0
    last_exit_code: int | None = None  # the run before the last restart
    last_finished_at: str | None = None


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
        if not base or kind not in ("started", "exit", "restarts", "last"):
            continue
        entry = fields.setdefault(base, {})
        if kind == "started":
            entry["started_at"] = value or None
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
