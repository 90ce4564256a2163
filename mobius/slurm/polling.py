"""The status poller: one squeue call per tick for all jobs, control files, and the verdict.

Each tick it lists every job of ours in every state with ONE squeue call, reads the control
files of pods whose jobs may have changed (in a worker thread, all pods at once), asks the pure
:func:`mobius.pods.status.pod_status` what each pod's status is, and sends only the statuses
that differ from what it last sent to the status writer.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import msgspec
import trio

from mobius.errors import ParseError, SlurmCommandError
from mobius.pods.records import PodRecord, pod_record
from mobius.pods.script import job_name
from mobius.pods.status import JobView, pod_status
from mobius.slurm.commands import SlurmClient
from mobius.state import JobTable, PodPaths, PodStore

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
StatusUpdate = tuple[str, dict[str, Any]]


def read_ctl(ctl: Path) -> dict[str, str]:
    """``{relative path: content}`` of a pod's control folder (empty if there is none yet)."""
    files: dict[str, str] = {}
    for sub in ("", "c/"):
        try:
            entries = list(os.scandir(ctl / sub if sub else ctl))
        except OSError:
            continue
        for e in entries:
            if e.is_file() and not e.name.endswith(".tmp"):
                try:
                    with open(e.path) as f:
                        files[sub + e.name] = f.read(4096)
                except OSError:
                    continue
    return files


def _read_records(paths: PodPaths, uids: list[str]) -> list[PodRecord]:
    return [pod_record(read_ctl(paths.ctl_dir(uid))) for uid in uids]


def fingerprint(status: dict[str, Any]) -> bytes:
    """The status without transition times: what decides whether a write is needed."""
    conds = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
    ]
    return _encoder.encode({**status, "conditions": conds, "startTime": None})


async def serve_status_poller(
    slurm: SlurmClient,
    *,
    store: PodStore,
    jobs: JobTable,
    paths: PodPaths,
    updates: trio.MemorySendChannel[StatusUpdate],
    interval: float = 1.0,
    host_ip: str | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    sent: dict[str, bytes] = {}
    started = False
    while True:
        tick = trio.current_time()
        try:
            rows = await slurm.squeue()
        except (SlurmCommandError, ParseError) as exc:
            log.warning("squeue failed: %s; keeping the last known statuses", exc)
            await trio.sleep(interval)
            continue
        by_name = {r.name: r for r in rows}
        work = []
        for uid, job in jobs.items():
            pod = store.get(uid)
            if (
                pod is None
                or pod.status.phase in ("Succeeded", "Failed")
                or pod.metadata.deletion_timestamp
            ):
                continue
            work.append((uid, pod, job))
        records = await trio.to_thread.run_sync(_read_records, paths, [uid for uid, _, _ in work])
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for (uid, pod, job), record in zip(work, records, strict=True):
            if job.error:
                status = failed_status(pod, reason=job.reason, message=job.error, now=now)
            else:
                row = by_name.get(job_name(uid))
                view = (
                    JobView(job_id=row.job_id, state=row.state, reason=row.reason, nodes=row.nodes)
                    if row
                    else None
                )
                # A job submitted after this squeue call began is not missing, just not listed yet.
                submitted = job.submitted_at < tick
                status = pod_status(
                    pod, job=view, record=record, submitted=submitted, now=now, host_ip=host_ip
                )
            mark = fingerprint(status)
            if sent.get(uid) != mark:
                sent[uid] = mark
                await updates.send((uid, status))
        for uid in set(sent) - {uid for uid, _ in jobs.items()}:
            del sent[uid]
        if not started:
            task_status.started()
            started = True
        await trio.sleep(max(0.0, interval - (trio.current_time() - tick)))


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
