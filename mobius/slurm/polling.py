"""The status poller: one squeue call per tick for all jobs, control files, and the verdict.

Each tick it lists every job of ours in every state with ONE squeue call and sends the status
writer the pods whose status changed. With 10,000 pods most of them change nothing in a given
second, so a tick does work only where something may have moved:

- the squeue rows are diffed against the previous tick's (``mobius._fast.diff_rows``): the
  names whose job id, state, reason, times or nodes changed, and the jobs that left squeue;
- control files are written only by a running job script, always by rename, so a rename shows
  as a new mtime of the folder (``ctl/`` or ``ctl/c/``). For pods whose job runs, ended or just
  changed, the folders are stat'ed and read again only when an mtime moved (in a worker
  thread); pods whose job waits in the queue keep their last record without a syscall. A run
  writes its pod-level files (``node``, ``pod.ip``, then ``pod.started``) once, at its start,
  and ``stopping`` once when its TERM trap runs, so once ``stopping`` was read only ``ctl/c/`` is
  stat'ed, until the job's row changes again (a requeued job runs the script anew);
- the pure :func:`mobius.pods.status.pod_status` is asked again only for pods whose squeue row,
  control files, pod object (resourceVersion), job, or submitted-ness changed; its answer goes
  to the writer only when it differs from what was sent (transition times aside).

The status is a function of exactly these inputs (the clock only sets transition and start
times, which the fingerprint leaves out), so skipping the others changes no write.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

import msgspec
import trio

from mobius._fast import SqueueRow, diff_rows
from mobius.errors import ParseError, SlurmCommandError
from mobius.metrics import ERRORS
from mobius.models import Pod
from mobius.pods.images import image_events
from mobius.pods.probes import ContainerEvent, record_events
from mobius.pods.records import PodRecord, pod_record
from mobius.pods.script import job_name
from mobius.pods.status import WAITING, JobView, pod_status
from mobius.state import Job, JobTable, PodPaths, PodStore

__all__ = [
    "RACY_NS",
    "SqueueSource",
    "StatusPoller",
    "StatusUpdate",
    "TickStats",
    "failed_status",
    "fingerprint",
    "read_ctl",
    "serve_status_poller",
]

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
StatusUpdate = tuple[str, dict[str, Any]]

_FINAL_PHASES = ("Succeeded", "Failed")

RACY_NS = 1_000_000_000
"""A control folder whose mtime is this close to the time it was read may change again within
the file system's timestamp granularity without its mtime moving; it is read again next tick."""

_CtlKey = tuple[int, int]  # mtime_ns of ctl/ and ctl/c/, -1 when missing
_NO_RECORD = PodRecord()


# Job ids -> their Slurm state from accounting (sacct), for jobs that left squeue.
Accounting = Callable[[list[str]], Awaitable[dict[str, str]]]


class SqueueSource(Protocol):
    """What the poller needs of Slurm (``SlurmClient``, or a fake in tests and benchmarks)."""

    async def squeue(self) -> list[SqueueRow]: ...


def read_ctl(ctl: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative path: content}`` of a pod's control folder (empty if there is none yet)."""
    files: dict[str, str] = {}
    root = os.fspath(ctl)
    for sub in ("", "c/"):
        try:
            entries = list(os.scandir(os.path.join(root, sub) if sub else root))
        except OSError:
            continue
        for e in entries:
            if e.is_file() and not e.name.endswith(".tmp"):
                try:
                    with open(e.path, errors="replace") as f:
                        files[sub + e.name] = f.read(4096)
                except OSError:
                    continue
    return files


def _refresh(
    work: list[tuple[str, str, _CtlKey | None, bool]],
) -> list[tuple[_CtlKey | None, PodRecord] | None]:
    """For each ``(ctl folder, ctl/c folder, key when last read, whether to stat ctl/ too)``:
    None if the folders did not move, else the new key and the record read again.

    Runs in a worker thread. The new key is None when the read was racy (see ``RACY_NS``).
    """
    racy_after = time.time_ns() - RACY_NS
    stat = os.stat
    out: list[tuple[_CtlKey | None, PodRecord] | None] = []
    for ctl, ctl_c, old, top in work:
        try:
            c = stat(ctl_c).st_mtime_ns
        except OSError:
            c = -1
        if top or old is None:
            try:
                t = stat(ctl).st_mtime_ns
            except OSError:
                t = -1
        else:
            t = old[0]
        if old is not None and c == old[1] and t == old[0]:
            out.append(None)
            continue
        record = pod_record(read_ctl(ctl))
        out.append((None if t >= racy_after or c >= racy_after else (t, c), record))
    return out


def fingerprint(status: dict[str, Any]) -> bytes:
    """The status without transition times: what decides whether a write is needed."""
    conds = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
    ]
    return _encoder.encode({**status, "conditions": conds, "startTime": None})


class _Seen:
    """What the poller knows of one pod: the inputs of its last verdict, and what was sent."""

    __slots__ = (
        "ctl",
        "ctl_c",
        "ctl_key",
        "job",
        "mark",
        "name",
        "pod",
        "record",
        "submitted",
        "tick",
        "version",
    )

    def __init__(self, uid: str, root: str) -> None:
        self.name = job_name(uid)
        self.ctl = os.path.join(root, uid, "ctl")
        self.ctl_c = os.path.join(self.ctl, "c")
        self.ctl_key: _CtlKey | None = None  # None: read the folder at the next chance
        self.record = _NO_RECORD
        self.pod: Pod | None = None
        self.version = ""
        self.job: Job | None = None
        self.submitted = False
        self.mark: bytes | None = None  # fingerprint of the last status sent
        self.tick = -1  # the last tick that looked at the pod


class TickStats(msgspec.Struct):
    """What one tick did: how many rows changed, folders were stat'ed / read, verdicts / sends."""

    rows: int = 0
    changed_rows: int = 0
    live_pods: int = 0
    stat: int = 0
    read: int = 0
    computed: int = 0
    sent: int = 0


class StatusPoller:
    """The poller's memory between ticks, and one tick's work (no squeue call, no channel)."""

    def __init__(
        self,
        *,
        store: PodStore,
        jobs: JobTable,
        paths: PodPaths,
        host_ip: str | None = None,
        accounting: Accounting | None = None,
    ) -> None:
        self.store = store
        self.accounting = accounting  # sacct, where the cluster keeps accounting
        self.jobs = jobs
        self.host_ip = host_ip
        self.rows: dict[str, SqueueRow] = {}  # the last squeue snapshot, by job name
        self.last = TickStats()
        # What the jobs' probes, hooks and image steps reported during the last tick (Unhealthy,
        # Killing, Pulled...).
        self.events: list[tuple[str, ContainerEvent]] = []
        self._root = os.fspath(paths.root)
        self._seen: dict[str, _Seen] = {}
        self._ticks = 0

    def __repr__(self) -> str:
        return f"<StatusPoller {len(self._seen)} pods, {len(self.rows)} rows, tick {self._ticks}>"

    async def _accounted(
        self, work: list[tuple[_Seen, str, Pod, Job, SqueueRow | None, bool]], due: list[bool]
    ) -> dict[str, str]:
        """What accounting says of the jobs due a verdict that left squeue: ONE sacct call for
        all of them, only when the cluster keeps accounting; {} if it fails (the job's control
        files and, failing those, SlurmJobLost still decide)."""
        if self.accounting is None:
            return {}
        gone = [
            job.job_id
            for (_, _, _, job, row, submitted), d in zip(work, due, strict=True)
            if d and row is None and submitted and job.job_id and not job.error
        ]
        if not gone:
            return {}
        try:
            return await self.accounting(gone)
        except (SlurmCommandError, ParseError) as exc:
            log.warning("sacct failed: %s; judging vanished jobs by their control files", exc)
            return {}

    async def tick(self, rows: list[SqueueRow], *, began: float) -> list[StatusUpdate]:
        """The status updates this squeue output calls for (``began``: when squeue was called).

        A job submitted after ``began`` is not missing from ``rows``, just not listed yet.
        """
        self._ticks += 1
        ticks = self._ticks
        self.rows, changed_names = diff_rows(self.rows, rows)
        changed = set(changed_names)
        snapshot = self.rows
        seen = self._seen
        store = self.store
        root = self._root
        stats = TickStats(rows=len(rows), changed_rows=len(changed_names))
        self.events = []
        # The live pods that need a look: their inputs, and whether a verdict is due.
        work: list[tuple[_Seen, str, Pod, Job, SqueueRow | None, bool]] = []
        due: list[bool] = []
        to_stat: list[tuple[str, str, _CtlKey | None, bool]] = []
        stat_at: list[int] = []  # index in work of each to_stat entry
        items = self.jobs.items()
        live = 0
        for uid, job in items:
            pod = store.get(uid)
            if pod is None or pod.status.phase in _FINAL_PHASES or pod.metadata.deletion_timestamp:
                continue
            live += 1
            s = seen.get(uid)
            if s is None:
                s = seen[uid] = _Seen(uid, root)
            dirty = (
                s.tick != ticks - 1  # new, or skipped for a while: rows may have changed since
                or pod is not s.pod
                or pod.metadata.resource_version != s.version
                or job is not s.job
            )
            s.tick = ticks
            row = snapshot.get(s.name)
            submitted = job.submitted_at < began
            if job.error:
                if dirty:
                    work.append((s, uid, pod, job, None, submitted))
                    due.append(True)
                continue
            row_changed = s.name in changed
            dirty = dirty or row_changed or submitted != s.submitted
            if s.ctl_key is None or row_changed or row is None or row.state not in WAITING:
                stat_at.append(len(work))
                # After pod.started, the only pod-level file a run still writes is ``stopping``
                # (its TERM trap ran), once: until then ctl/ is watched too.
                top = row_changed or s.record.started_at is None or s.record.stopped_by is None
                to_stat.append((s.ctl, s.ctl_c, s.ctl_key, top))
            elif not dirty:
                continue
            work.append((s, uid, pod, job, row, submitted))
            due.append(dirty)
        stats.live_pods = live
        for uid in seen.keys() - {uid for uid, _ in items}:
            del seen[uid]
        stats.stat = len(to_stat)
        if to_stat:
            refreshed = await trio.to_thread.run_sync(_refresh, to_stat)
            for i, fresh in zip(stat_at, refreshed, strict=True):
                if fresh is None:
                    continue
                s = work[i][0]
                s.ctl_key, record = fresh
                stats.read += 1
                if record != s.record:
                    if s.record.started_at is not None:  # news only, not a first read's past
                        uid = work[i][1]
                        self.events += [(uid, e) for e in record_events(s.record, record)]
                    _, uid, pod, job, _, _ = work[i]
                    # Image pulls (mobius.pods.images) start with the job: all of it is news,
                    # unless the job was recovered after a restart (its past was reported).
                    if s.record is not _NO_RECORD or job.submitted_at:
                        self.events += [(uid, e) for e in image_events(pod, s.record, record)]
                    s.record = record
                    due[i] = True
        accounted = await self._accounted(work, due)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        updates: list[StatusUpdate] = []
        for (s, uid, pod, job, row, submitted), dirty in zip(work, due, strict=True):
            if not dirty:
                continue
            stats.computed += 1
            s.pod, s.version, s.job, s.submitted = (
                pod,
                pod.metadata.resource_version,
                job,
                submitted,
            )
            if job.error:
                status = failed_status(pod, reason=job.reason, message=job.error, now=now)
            else:
                view = (
                    JobView(job_id=row.job_id, state=row.state, reason=row.reason, nodes=row.nodes)
                    if row
                    else JobView(job_id=job.job_id, state=accounted[job.job_id])
                    if job.job_id in accounted
                    else None
                )
                status = pod_status(
                    pod,
                    job=view,
                    record=s.record,
                    submitted=submitted,
                    now=now,
                    host_ip=self.host_ip,
                )
            mark = fingerprint(status)
            if s.mark != mark:
                s.mark = mark
                updates.append((uid, status))
        stats.sent = len(updates)
        self.last = stats
        return updates


async def serve_status_poller(
    slurm: SqueueSource,
    *,
    store: PodStore,
    jobs: JobTable,
    paths: PodPaths,
    updates: trio.MemorySendChannel[StatusUpdate],
    interval: float = 1.0,
    host_ip: str | None = None,
    accounting: Accounting | None = None,
    events: trio.MemorySendChannel[tuple[str, ContainerEvent]] | None = None,
    task_status: trio.TaskStatus[StatusPoller] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Poll squeue every ``interval`` seconds and send the status updates the changes call for,
    and to ``events`` what the jobs' probes, hooks and image steps reported (best effort:
    dropped rather than waited for when the channel is full).
    Started, it hands over its :class:`StatusPoller` (whose ``rows`` the metrics read)."""
    poller = StatusPoller(
        store=store, jobs=jobs, paths=paths, host_ip=host_ip, accounting=accounting
    )
    started = False
    while True:
        began = trio.current_time()
        try:
            rows = await slurm.squeue()
        except (SlurmCommandError, ParseError) as exc:
            log.warning("squeue failed: %s; keeping the last known statuses", exc)
            ERRORS.labels("status-poller").inc()
            await trio.sleep(interval)
            continue
        for update in await poller.tick(rows, began=began):
            await updates.send(update)
        if events is not None:
            for event in poller.events:
                try:
                    events.send_nowait(event)
                except trio.WouldBlock:
                    log.debug("event channel full; dropped %s", event)
        log.debug("status tick: %s", poller.last)
        if not started:
            task_status.started(poller)
            started = True
        await trio.sleep(max(0.0, interval - (trio.current_time() - began)))


def failed_status(pod: Any, *, reason: str, message: str, now: str) -> dict[str, Any]:
    """The status of a pod that will never run (its spec is invalid or Slurm refused it)."""
    waiting = [
        {
            "name": c.name,
            "image": c.image,
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"terminated": {"exitCode": 1, "reason": reason, "message": message}},
        }
        for c in pod.spec.containers
    ]
    return {
        "phase": "Failed",
        "reason": reason,
        "message": message,
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now,
            },
            {
                "type": "Ready",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": now,
                "reason": "PodFailed",
            },
        ],
        "containerStatuses": waiting,
        "startTime": pod.status.start_time or now,
    }
