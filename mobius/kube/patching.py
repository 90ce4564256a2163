"""The status writer: pod status goes to the API server only when it changed, coalesced.

Updates arrive per pod UID; a newer update for a pod replaces one not yet written, so a burst of
changes costs one write per pod. A few workers write concurrently under the client's rate limit;
failed writes are retried with back-off unless a newer status has arrived meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import trio

from mobius.errors import ApiError, ApiUnreachable, NotFound
from mobius.kube.client import KubeClient
from mobius.state import PodStore

log = logging.getLogger(__name__)

# Fields a status write must clear explicitly: a merge patch leaves absent keys untouched.
_CLEARABLE = ("reason", "message", "podIP", "podIPs", "hostIP", "hostIPs", "initContainerStatuses")


async def serve_status_writer(
    kube: KubeClient,
    *,
    store: PodStore,
    updates: trio.MemoryReceiveChannel[tuple[str, dict[str, Any]]],
    workers: int = 16,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    pending: dict[str, dict[str, Any]] = {}
    wakeup = trio.Event()
    writes = 0

    async def collect() -> None:
        nonlocal wakeup
        async for uid, status in updates:
            pending[uid] = status
            wakeup.set()

    async def write() -> NoReturn:
        nonlocal wakeup, writes
        while True:
            while not pending:
                if wakeup.is_set():
                    wakeup = trio.Event()
                await wakeup.wait()
            uid = next(iter(pending))
            status = pending.pop(uid)
            pod = store.get(uid)
            if pod is None:
                continue
            body = {"status": {**dict.fromkeys(_CLEARABLE), **status}}
            path = f"/api/v1/namespaces/{pod.metadata.namespace}/pods/{pod.metadata.name}/status"
            try:
                await kube.merge_patch(path, body)
                writes += 1
            except NotFound:
                continue
            except (ApiError, ApiUnreachable) as exc:
                log.warning("status write for %s failed: %s; will retry", pod.key, exc)
                await trio.sleep(1.0)
                pending.setdefault(uid, status)
                wakeup.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        for _ in range(workers):
            nursery.start_soon(write)
        task_status.started()
    raise AssertionError("status writer stopped")
