"""Kubernetes Events about pods: how users learn what Mobius did and why (kubectl describe)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import NoReturn

import trio

from mobius.errors import ApiError, ApiUnreachable
from mobius.kube.client import KubeClient
from mobius.models import Pod
from mobius.pods.probes import ContainerEvent
from mobius.state import PodStore

log = logging.getLogger(__name__)


def rfc3339(ts: datetime | None = None) -> str:
    return (ts or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(ts: datetime | None = None) -> str:
    return (ts or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def emit_event(
    kube: KubeClient,
    pod: Pod,
    *,
    reason: str,
    message: str,
    type: str = "Normal",
    component: str = "mobius-kubelet",
    host: str = "",
    field_path: str = "",
) -> None:
    """Post an Event about ``pod``; failures are logged, never raised (events are best effort).
    ``field_path`` names the part of the pod it is about, e.g. ``spec.containers{web}``."""
    ns = pod.metadata.namespace
    now = rfc3339()
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod.metadata.name}.{uuid.uuid4().hex[:16]}", "namespace": ns},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": ns,
            "name": pod.metadata.name,
            "uid": pod.metadata.uid,
            "resourceVersion": pod.metadata.resource_version,
            **({"fieldPath": field_path} if field_path else {}),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type,
        "source": {"component": component, "host": host},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": host,
    }
    try:
        await kube.create(f"/api/v1/namespaces/{ns}/events", body)
    except (ApiError, ApiUnreachable) as exc:
        log.warning("could not record event %s for %s: %s", reason, pod.key, exc)


async def serve_container_events(
    kube: KubeClient,
    *,
    store: PodStore,
    events: trio.MemoryReceiveChannel[tuple[str, ContainerEvent]],
    node_name: str = "",
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Post the events the status poller found in the jobs' control files (probe failures,
    containers killed, failed hooks, image pulls), one at a time, for pods still known."""
    task_status.started()
    async for uid, event in events:
        pod = store.get(uid)
        if pod is None:
            continue
        await emit_event(
            kube,
            pod,
            reason=event.reason,
            message=event.message,
            type=event.type,
            host=node_name,
            field_path=f"spec.containers{{{event.container}}}",
        )
    raise AssertionError("the event channel closed")
