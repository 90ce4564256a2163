"""In-memory state the kubelet tasks share, keyed by pod UID.

``PodStore`` mirrors the pods bound to our node as the watch last saw them. ``JobTable`` maps a
pod to its Slurm job; it is rebuilt after a restart from squeue (job names carry the pod UID)
and from the job id file in each pod's folder, so no job is lost or submitted twice.
Both are touched only from the trio thread, so they need no locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import trio

from mobius.models import Pod
from mobius.pods.placement import ClusterShape


class PodStore:
    def __init__(self) -> None:
        self._pods: dict[str, Pod] = {}
        self._by_key: dict[str, str] = {}
        self.synced = trio.Event()  # set once the pod watch has done its first LIST

    def __len__(self) -> int:
        return len(self._pods)

    def __iter__(self) -> Iterator[Pod]:
        return iter(list(self._pods.values()))

    def __repr__(self) -> str:
        return f"<PodStore {len(self._pods)} pods>"

    def get(self, uid: str) -> Pod | None:
        return self._pods.get(uid)

    def by_name(self, namespace: str, name: str) -> Pod | None:
        uid = self._by_key.get(f"{namespace}/{name}")
        return self._pods.get(uid) if uid else None

    def put(self, pod: Pod) -> None:
        self._pods[pod.metadata.uid] = pod
        self._by_key[pod.key] = pod.metadata.uid

    def remove(self, uid: str) -> Pod | None:
        pod = self._pods.pop(uid, None)
        if pod is not None and self._by_key.get(pod.key) == uid:
            del self._by_key[pod.key]
        return pod

    def uids(self) -> set[str]:
        return set(self._pods)


class Job(msgspec.Struct, frozen=True):
    """A pod's job. ``error`` set: the pod has failed for that reason (``job_id`` empty if no
    job was ever submitted)."""

    job_id: str
    submitted_at: float = 0.0  # trio clock; 0.0 for jobs recovered after a restart
    error: str = ""
    reason: str = ""


class JobTable:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, uid: object) -> bool:
        return uid in self._jobs

    def __repr__(self) -> str:
        return f"<JobTable {len(self._jobs)} jobs>"

    def get(self, uid: str) -> Job | None:
        return self._jobs.get(uid)

    def set(self, uid: str, job: Job) -> None:
        self._jobs[uid] = job

    def forget(self, uid: str) -> Job | None:
        return self._jobs.pop(uid, None)

    def items(self) -> list[tuple[str, Job]]:
        return list(self._jobs.items())


class PodPaths:
    """Where a pod's files live: ``<state dir>/pods/<uid>/`` on storage the Slurm nodes share."""

    def __init__(self, state_dir: Path):
        self.root = state_dir / "pods"

    def __repr__(self) -> str:
        return f"<PodPaths {self.root}>"

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    def ctl_dir(self, uid: str) -> Path:
        return self.root / uid / "ctl"

    def job_id_file(self, uid: str) -> Path:
        return self.root / uid / "job.id"


class ClusterInfo:
    """What the Slurm cluster offers, refreshed by the node task and read by the scheduler."""

    def __init__(self) -> None:
        self.shape: ClusterShape | None = None

    def __repr__(self) -> str:
        return f"<ClusterInfo {self.shape!r}>"
