"""The pass-through scheduler: every unscheduled pod goes to the virtual node.

Slurm does the real placement, so there is nothing to decide here: a pod whose schedulerName is
one of ours gets a Binding to our node and a Scheduled event. Failed bindings are retried with
back-off; a pod deleted meanwhile is dropped.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import trio

from mobius.errors import ApiError, ApiUnreachable, Conflict, NotFound
from mobius.kube.client import KubeClient
from mobius.kube.events import emit_event
from mobius.kube.watching import list_and_watch
from mobius.models import Pod

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


async def serve_binder(
    kube: KubeClient,
    *,
    node_name: str,
    scheduler_names: tuple[str, ...],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    send, receive = trio.open_memory_channel[Pod](1000)
    pending: set[str] = set()

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
        if kind != "DELETED":
            await offer(pod)

    async def binder() -> NoReturn:
        async for pod in receive:
            delay = 0.2
            while True:
                try:
                    await bind(kube, pod, node_name)
                except (NotFound, Conflict):
                    break  # deleted, or already bound (by us or anyone): nothing left to do
                except (ApiError, ApiUnreachable) as exc:
                    log.warning("binding %s failed (%s); retrying in %.1fs", pod.key, exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                await emit_event(
                    kube,
                    pod,
                    reason="Scheduled",
                    type="Normal",
                    message=f"Successfully assigned {pod.key} to {node_name}",
                    component="mobius-scheduler",
                )
                break
            pending.discard(pod.metadata.uid)
        raise AssertionError("binder channel closed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(binder)
        await nursery.start(
            lambda task_status: list_and_watch(
                kube,
                "/api/v1/pods",
                item_type=Pod,
                params={"fieldSelector": "spec.nodeName=,status.phase=Pending"},
                on_list=on_list,
                on_event=on_event,
                task_status=task_status,
            )
        )
        task_status.started()
    raise AssertionError("binder stopped")
