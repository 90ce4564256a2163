"""Kubernetes Events about pods: how users learn what Mobius did and why (kubectl describe)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from mobius.errors import ApiError, ApiUnreachable
from mobius.kube.client import KubeClient
from mobius.models import Pod

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
) -> None:
    """Post an Event about ``pod``; failures are logged, never raised (events are best effort)."""
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
