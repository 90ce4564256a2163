"""activeDeadlineSeconds, enforced by the kubelet as Kubernetes does.

The deadline counts from the pod's start time (when the kubelet first reported it), so time
spent pending in the Slurm queue counts too; Slurm's own ``--time`` only bounds the running
part and is a backstop. A pod past its deadline has its job cancelled and is failed with reason
DeadlineExceeded.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import NoReturn

import trio

from mobius.kube.client import KubeClient
from mobius.kube.events import emit_event
from mobius.models import Pod
from mobius.slurm.commands import SlurmClient
from mobius.slurm.jobs import stop_job
from mobius.state import Job, JobTable, PodPaths, PodStore

log = logging.getLogger(__name__)

DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def past_deadline(pod: Pod, now: datetime) -> bool:
    deadline = pod.spec.active_deadline_seconds
    start = pod.status.start_time
    if deadline is None or not start or pod.status.phase in ("Succeeded", "Failed"):
        return False
    started = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return (now - started).total_seconds() >= deadline


async def serve_deadlines(
    kube: KubeClient,
    slurm: SlurmClient,
    *,
    store: PodStore,
    jobs: JobTable,
    paths: PodPaths,
    node_name: str,
    interval: float = 1.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    async def expire(pod: Pod, job: Job) -> None:
        grace = pod.spec.termination_grace_period_seconds
        await emit_event(
            kube,
            pod,
            reason="DeadlineExceeded",
            type="Warning",
            message=DEADLINE_MESSAGE,
            host=node_name,
        )
        if job.job_id:
            await stop_job(
                slurm, paths, pod.metadata.uid, job.job_id, 30 if grace is None else grace
            )

    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            await trio.sleep(interval)
            now = datetime.now(UTC)
            for pod in store:
                uid = pod.metadata.uid
                job = jobs.get(uid)
                if job is None or job.error or not past_deadline(pod, now):
                    continue
                # The poller reports Failed/DeadlineExceeded from here on; the job is stopped
                # with the pod's grace period, as the kubelet kills containers.
                jobs.set(
                    uid, Job(job_id=job.job_id, error=DEADLINE_MESSAGE, reason="DeadlineExceeded")
                )
                nursery.start_soon(expire, pod, job)
