"""The pass-through scheduler: every unscheduled pod goes to the virtual node.

Slurm does the real placement, so there is nothing to decide here: a pod whose schedulerName is
one of ours gets a Binding to our node and a Scheduled event. Failed bindings are retried with
back-off; a pod deleted meanwhile is dropped.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import NoReturn

import trio

from mobius.errors import ApiError, ApiUnreachable, Conflict, NotFound
from mobius.kube.client import KubeClient
from mobius.kube.events import emit_event, rfc3339
from mobius.kube.watching import list_and_watch
from mobius.models import Pod
from mobius.pods.placement import unschedulable_reason
from mobius.state import ClusterInfo

log = logging.getLogger(__name__)


async def bind(kube: KubeClient, pod: Pod, node_name: str) -> None:
    ns, name = pod.metadata.namespace, pod.metadata.name
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
    }
    await kube.create(f"/api/v1/namespaces/{ns}/pods/{name}/binding", body)


async def mark_unschedulable(kube: KubeClient, pod: Pod, reason: str) -> None:
    """PodScheduled=False with the reason, and a FailedScheduling event, as kube-scheduler does."""
    ns, name = pod.metadata.namespace, pod.metadata.name
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": reason,
        "lastProbeTime": None,
        "lastTransitionTime": rfc3339(),
    }
    await kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{name}/status",
        body={"status": {"conditions": [condition]}},
        content_type="application/strategic-merge-patch+json",
    )
    await emit_event(
        kube,
        pod,
        reason="FailedScheduling",
        type="Warning",
        message=reason,
        component="mobius-scheduler",
    )


async def serve_binder(
    kube: KubeClient,
    *,
    node_name: str,
    scheduler_names: tuple[str, ...],
    cluster: ClusterInfo,
    workers: int = 8,
    recheck_interval: float = 60.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    send, receive = trio.open_memory_channel[Pod](1000)
    pending: set[str] = set()
    unschedulable: dict[str, tuple[Pod, str]] = {}  # UID -> (pod, the reason last reported)

    async def offer(pod: Pod) -> None:
        if (
            pod.spec.node_name
            or pod.metadata.deletion_timestamp
            or pod.spec.scheduler_name not in scheduler_names
            or pod.metadata.uid in pending
        ):
            return
        pending.add(pod.metadata.uid)
        await send.send(pod)

    async def on_list(pods: list[Pod]) -> None:
        for pod in pods:
            await offer(pod)

    async def on_event(kind: str, pod: Pod) -> None:
        if kind == "DELETED":
            unschedulable.pop(pod.metadata.uid, None)
        else:
            await offer(pod)

    async def schedule(pod: Pod) -> None:
        uid = pod.metadata.uid
        why = unschedulable_reason(pod, cluster.shape) if cluster.shape else None
        if why is not None:
            if unschedulable.get(uid, (None, ""))[1] != why:
                await mark_unschedulable(kube, pod, why)
            unschedulable[uid] = (pod, why)
            return
        unschedulable.pop(uid, None)
        await bind(kube, pod, node_name)
        await emit_event(
            kube,
            pod,
            reason="Scheduled",
            type="Normal",
            message=f"Successfully assigned {pod.key} to {node_name}",
            component="mobius-scheduler",
        )

    async def worker() -> NoReturn:
        async for pod in receive:
            delay = 0.2
            while True:
                try:
                    await schedule(pod)
                except (NotFound, Conflict):
                    pass  # deleted, or already bound (by us or anyone): nothing left to do
                except (ApiError, ApiUnreachable) as exc:
                    log.warning("scheduling %s failed (%s); retrying in %.1fs", pod.key, exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                break
            pending.discard(pod.metadata.uid)
        raise AssertionError("binder channel closed")

    async def recheck() -> NoReturn:
        """Pods Slurm could not hold may fit once the cluster changes: look again now and then."""
        while True:
            await trio.sleep(recheck_interval)
            for pod, _ in list(unschedulable.values()):
                await offer(pod)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
        nursery.start_soon(recheck)
        await nursery.start(
            partial(
                list_and_watch,
                kube,
                "/api/v1/pods",
                item_type=Pod,
                params={"fieldSelector": "spec.nodeName=,status.phase=Pending"},
                on_list=on_list,
                on_event=on_event,
            )
        )
        task_status.started()
    raise AssertionError("binder stopped")
