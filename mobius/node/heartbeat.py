"""Register the virtual node that stands for the Slurm cluster, and keep it alive.

The node's capacity is what Slurm offers (sinfo); its address is where the kubelet API listens.
The Lease in ``kube-node-lease`` is renewed every ``lease_interval`` seconds (what the node
lifecycle controller watches); the full node status is refreshed less often, as the kubelet does.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import socket
from datetime import UTC, datetime
from typing import Any, NoReturn

import msgspec
import trio

from mobius import __version__
from mobius.errors import ApiError, ApiUnreachable, Conflict, NotFound, SlurmCommandError
from mobius.kube.client import KubeClient
from mobius.pods.placement import ClusterShape
from mobius.slurm.commands import Capacity, SlurmClient
from mobius.state import ClusterInfo

log = logging.getLogger(__name__)

LEASE_SECONDS = 40
TAINT = {"key": "virtual-kubelet.io/provider", "value": "mobius", "effect": "NoSchedule"}


class NodeSettings(msgspec.Struct, frozen=True):
    name: str
    address: str
    kubelet_port: int
    max_pods: int = 10000
    taint: bool = False  # virtual-kubelet.io/provider=mobius:NoSchedule, as HPK offers
    lease_interval: float = 10.0
    status_interval: float = 60.0
    runtime: str = "podman"


def _now(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.now(UTC).strftime(fmt)


def node_object(settings: NodeSettings, capacity: Capacity) -> dict[str, Any]:
    labels = {
        "type": "virtual-kubelet",
        "kubernetes.io/role": "agent",
        "kubernetes.io/hostname": settings.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "slurm",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": settings.name, "labels": labels},
        "spec": {"taints": [TAINT] if settings.taint else []},
    }


def node_status(settings: NodeSettings, capacity: Capacity, *, since: str) -> dict[str, Any]:
    now = _now()
    resources = {
        "cpu": str(capacity.cpus),
        "memory": f"{capacity.memory_mb}Mi",
        "pods": str(settings.max_pods),
        "ephemeral-storage": "100Gi",
    }
    if capacity.gpus:
        resources["nvidia.com/gpu"] = str(capacity.gpus)

    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }

    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond(
                "Ready",
                "True",
                "KubeletReady",
                f"Slurm reachable: {capacity.nodes} nodes, partitions {','.join(capacity.partitions)}",
            ),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "Slurm schedules memory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "Slurm schedules disk"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "Slurm schedules processes"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": settings.address},
            {"type": "Hostname", "address": settings.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": settings.kubelet_port}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": f"Slurm via Mobius {__version__}",
            "containerRuntimeVersion": f"{settings.runtime}://",
            "kubeletVersion": f"v{__version__}-mobius",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


async def _register(kube: KubeClient, settings: NodeSettings, capacity: Capacity) -> None:
    # Registered before (a restart): keep the object; the caller refreshes its status.
    with contextlib.suppress(Conflict):
        await kube.create("/api/v1/nodes", node_object(settings, capacity))


async def _renew_lease(kube: KubeClient, settings: NodeSettings, node_uid: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{settings.name}"
    spec = {
        "holderIdentity": settings.name,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": _now(micro=True),
    }
    try:
        await kube.merge_patch(path, {"spec": spec})
    except NotFound:
        await kube.create(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": settings.name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": settings.name, "uid": node_uid}
                    ],
                },
                "spec": spec,
            },
        )


class _Uid(msgspec.Struct):
    uid: str = ""


class _NodeMeta(msgspec.Struct):
    metadata: _Uid = msgspec.field(default_factory=_Uid)


async def serve_node(
    kube: KubeClient,
    slurm: SlurmClient,
    *,
    settings: NodeSettings,
    cluster: ClusterInfo,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    capacity = await slurm.capacity()
    cluster.shape = shape_of(capacity)
    since = _now()
    await _register(kube, settings, capacity)
    node_uid = (await kube.get(f"/api/v1/nodes/{settings.name}", _NodeMeta)).metadata.uid
    await kube.merge_patch(
        f"/api/v1/nodes/{settings.name}/status",
        {"status": node_status(settings, capacity, since=since)},
    )
    await _renew_lease(kube, settings, node_uid)
    task_status.started()
    last_status = trio.current_time()
    while True:
        await trio.sleep(settings.lease_interval)
        try:
            await _renew_lease(kube, settings, node_uid)
            if trio.current_time() - last_status >= settings.status_interval:
                try:
                    capacity = await slurm.capacity()
                    cluster.shape = shape_of(capacity)
                except SlurmCommandError as exc:
                    log.warning("sinfo failed: %s; keeping the last capacity", exc)
                await kube.merge_patch(
                    f"/api/v1/nodes/{settings.name}/status",
                    {"status": node_status(settings, capacity, since=since)},
                )
                last_status = trio.current_time()
        except NotFound:
            log.warning("node %s was deleted; registering it again", settings.name)
            await _register(kube, settings, capacity)
            node_uid = (await kube.get(f"/api/v1/nodes/{settings.name}", _NodeMeta)).metadata.uid
            last_status = 0.0
        except (ApiError, ApiUnreachable) as exc:
            log.warning("node heartbeat failed: %s", exc)


def shape_of(capacity: Capacity) -> ClusterShape:
    return ClusterShape(
        max_node_cpus=capacity.max_node_cpus,
        max_node_memory_mb=capacity.max_node_memory_mb,
        partitions=capacity.partitions,
    )


def default_address() -> str:
    """This host's address as the API server should reach the kubelet API."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
