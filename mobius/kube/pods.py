"""The pod watch: keeps the PodStore in step with the pods bound to our node.

Each pod that appears, changes or goes away is announced (by UID) on the ``changes`` channel, so
the job task can submit, cancel or clean up. After a relist, pods missing from the list are
announced as gone too.
"""

from __future__ import annotations

from typing import NoReturn

import trio

from mobius.kube.client import KubeClient
from mobius.kube.watching import list_and_watch
from mobius.models import Pod
from mobius.state import PodStore


async def serve_pod_watch(
    kube: KubeClient,
    *,
    node_name: str,
    store: PodStore,
    changes: trio.MemorySendChannel[str],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    async def on_list(pods: list[Pod]) -> None:
        listed = {p.metadata.uid for p in pods}
        for uid in store.uids() - listed:
            store.remove(uid)
            await changes.send(uid)
        for pod in pods:
            store.put(pod)
        store.synced.set()
        for pod in pods:
            await changes.send(pod.metadata.uid)

    async def on_event(kind: str, pod: Pod) -> None:
        if kind == "DELETED":
            store.remove(pod.metadata.uid)
        else:
            store.put(pod)
        await changes.send(pod.metadata.uid)

    await list_and_watch(
        kube,
        "/api/v1/pods",
        item_type=Pod,
        params={"fieldSelector": f"spec.nodeName={node_name}"},
        on_list=on_list,
        on_event=on_event,
        task_status=task_status,
    )
