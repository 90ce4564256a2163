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
from mobius.kube.events import emit_event
from mobius.state import PodStore

log = logging.getLogger(__name__)

# Fields a status write must clear explicitly: a merge patch leaves absent keys untouched.
_CLEARABLE = ("reason", "message", "podIP", "podIPs", "hostIP", "hostIPs", "initContainerStatuses")


def phase_event(old_phase: str, status: dict[str, Any]) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event a phase change deserves, as the kubelet reports it."""
    phase = status.get("phase", "")
    if phase == old_phase:
        return None
    if phase == "Running":
        names = [
            c["name"]
            for c in status.get("containerStatuses", [])
            if "running" in c.get("state", {})
        ]
        return "Normal", "Started", f"Started container {', '.join(names)}" if names else "Started"
    if phase == "Failed":
        detail = status.get("message") or "; ".join(
            f"container {c['name']} exited {t['exitCode']} ({t.get('reason', '')})"
            for c in status.get("containerStatuses", [])
            if (t := c.get("state", {}).get("terminated")) and t.get("exitCode")
        )
        return "Warning", status.get("reason") or "Failed", detail or "pod failed"
    return None


async def serve_status_writer(
    kube: KubeClient,
    *,
    store: PodStore,
    updates: trio.MemoryReceiveChannel[tuple[str, dict[str, Any]]],
    node_name: str = "",
    workers: int = 16,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    pending: dict[str, dict[str, Any]] = {}
    in_flight: set[str] = set()  # one write per pod at a time, so writes land in order
    written_phase: dict[str, str] = {}
    wakeup = trio.Event()

    async def collect() -> None:
        nonlocal wakeup
        async for uid, status in updates:
            pending[uid] = status
            wakeup.set()

    def take() -> str | None:
        return next((uid for uid in pending if uid not in in_flight), None)

    async def write() -> NoReturn:
        nonlocal wakeup
        while True:
            while (uid := take()) is None:
                if wakeup.is_set():
                    wakeup = trio.Event()
                await wakeup.wait()
            status = pending.pop(uid)
            pod = store.get(uid)
            if pod is None:
                written_phase.pop(uid, None)
                continue
            body = {"status": {**dict.fromkeys(_CLEARABLE), **status}}
            path = f"/api/v1/namespaces/{pod.metadata.namespace}/pods/{pod.metadata.name}/status"
            in_flight.add(uid)
            try:
                await kube.merge_patch(path, body)
            except NotFound:
                continue
            except (ApiError, ApiUnreachable) as exc:
                log.warning("status write for %s failed: %s; will retry", pod.key, exc)
                await trio.sleep(1.0)
                pending.setdefault(uid, status)
                wakeup.set()
                continue
            finally:
                in_flight.discard(uid)
                if pending:
                    wakeup.set()
            old = written_phase.get(uid, pod.status.phase)
            written_phase[uid] = status.get("phase", "")
            if event := phase_event(old, status):
                kind, reason, message = event
                await emit_event(
                    kube, pod, reason=reason, message=message, type=kind, host=node_name
                )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        for _ in range(workers):
            nursery.start_soon(write)
        task_status.started()
    raise AssertionError("status writer stopped")
