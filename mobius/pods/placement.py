"""Can Slurm ever run this pod? The pass-through scheduler's only question.

Slurm does the real placement; Mobius only refuses pods that can never start, so they stay
Pending with a reason instead of becoming jobs that wait forever: requests larger than the
biggest node, or a partition that does not exist.
"""

from __future__ import annotations

import msgspec

from mobius.errors import InvalidPodSpec
from mobius.models import Pod
from mobius.pods.annotations import PREFIX, partition_of
from mobius.pods.script import pod_resources


class ClusterShape(msgspec.Struct, frozen=True):
    """What the cluster offers, as far as fitting one pod goes."""

    max_node_cpus: int
    max_node_memory_mb: int
    partitions: tuple[str, ...]


def unschedulable_reason(pod: Pod, cluster: ClusterShape) -> str | None:
    """Why the pod can never run on ``cluster``, or None if it may (invalid specs pass: the
    submitter fails them with a message naming the field)."""
    try:
        cpus, memory_mb = pod_resources(pod)
        partition = partition_of(pod.metadata.annotations)
    except InvalidPodSpec:
        return None
    if partition is not None and cluster.partitions and partition not in cluster.partitions:
        return (
            f"Slurm partition {partition!r} does not exist "
            f"(available: {', '.join(cluster.partitions)})"
        )
    multi_node = pod.metadata.annotations.get(PREFIX + "nodes", "1") not in ("1", "")
    if multi_node:
        return None  # spread over several nodes: Slurm decides
    if cluster.max_node_cpus and cpus > cluster.max_node_cpus:
        return (
            f"the pod requests {cpus} CPUs but the largest Slurm node has {cluster.max_node_cpus}"
        )
    if cluster.max_node_memory_mb and memory_mb > cluster.max_node_memory_mb:
        return (
            f"the pod requests {memory_mb} MiB of memory but the largest Slurm node has "
            f"{cluster.max_node_memory_mb} MiB"
        )
    return None
