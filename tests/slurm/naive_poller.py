"""The poller as it was before it diffed anything: every live pod's control folder read and its
status recomputed on every tick. The reference the diffing poller must agree with
(tests/slurm/test_polling.py) and the baseline it is measured against (benchmarks/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mobius._fast import SqueueRow
from mobius.pods.records import pod_record
from mobius.pods.script import job_name
from mobius.pods.status import JobView, pod_status
from mobius.slurm.polling import failed_status, fingerprint, read_ctl
from mobius.state import JobTable, PodPaths, PodStore


def naive_statuses(
    store: PodStore,
    jobs: JobTable,
    paths: PodPaths,
    rows: list[SqueueRow],
    sent: dict[str, bytes],
    began: float,
) -> list[tuple[str, dict[str, Any]]]:
    """The statuses one naive tick sends (those whose fingerprint differs from ``sent``)."""
    by_name = {r.name: r for r in rows}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    items = jobs.items()
    for uid, job in items:
        pod = store.get(uid)
        if pod is None or pod.status.phase in ("Succeeded", "Failed"):
            continue
        if job.error:
            status = failed_status(pod, reason=job.reason, message=job.error, now=now)
        else:
            r = by_name.get(job_name(uid))
            view = (
                JobView(job_id=r.job_id, state=r.state, reason=r.reason, nodes=r.nodes)
                if r
                else None
            )
            record = pod_record(read_ctl(paths.ctl_dir(uid)))
            status = pod_status(
                pod, job=view, record=record, submitted=job.submitted_at < began, now=now
            )
        mark = fingerprint(status)
        if sent.get(uid) != mark:
            sent[uid] = mark
            out.append((uid, status))
    for uid in set(sent) - {uid for uid, _ in items}:
        del sent[uid]
    return out
