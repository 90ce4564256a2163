"""A kubelet tracking many pods, without Kubernetes or Slurm: what the poller benchmarks need.

- ``pod_json``: a realistic pod as the API server returns it (a Deployment's pod: labels,
  annotations, owner reference, managed fields, env, resources, probes, volumes), which the
  kubelet decodes into ``mobius.models.Pod`` (keeping only the fields Mobius reads);
- ``Fleet``: N such pods in a ``PodStore`` and ``JobTable``, their folders under a state dir
  with the control files a running job script leaves, and the squeue output listing their jobs
  (``squeue_output``: a realistic mix of states, also what the parser benchmark parses); ``churn`` moves a fraction of
  them on (jobs start or end, containers restart) as between two ticks;
- ``naive_tick``: the poller as it was before it diffed anything (every live pod's folder read
  and status recomputed each tick), the baseline of the tick benchmark.

Run as a script, it reports the RSS of a process holding N pods (the memory benchmark runs it
in a fresh interpreter per size): ``python benchmarks/_scale.py memory N STATE_DIR``.
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec

from mobius._fast import SqueueRow
from mobius.models import Pod
from mobius.pods.script import job_name
from mobius.pods.status import ENDED, WAITING
from mobius.state import Job, JobTable, PodPaths, PodStore
from tests.slurm.naive_poller import naive_statuses

_STATES = (
    # (state, weight)
    ("RUNNING", 50),
    ("PENDING", 35),
    ("COMPLETING", 4),
    ("COMPLETED", 4),
    ("CANCELLED", 3),
    ("FAILED", 2),
    ("TIMEOUT", 1),
    ("CONFIGURING", 1),
)
_PENDING_REASONS = (
    "Priority",
    "Priority",
    "Priority",
    "Resources",
    "Resources",
    "Dependency",
    "BeginTime",
    "QOSMaxJobsPerUserLimit",
    "ReqNodeNotAvail, UnavailableNodes:gpu[003,017-020]",
    "(null)",
)
_ENDED_REASONS = ("None", "NonZeroExitCode", "TimeLimit", "(null)")


def squeue_output(n: int, *, seed: int = 0) -> str:
    """What ``squeue --noheader --format=SQUEUE_FORMAT`` prints for ``n`` jobs.

    A realistic mix: mostly RUNNING (node lists, start and end times) and PENDING (a reason,
    start time N/A or an estimate, no nodes), a few finishing or finished ones; some array
    tasks (``123_4``), pending array ranges (``123_[5-99%10]``) and het-job components
    (``77+1``). Names are 36-character UUIDs, as Mobius names its jobs after pod UIDs.
    """
    rng = random.Random(seed)
    states = [state for state, _ in _STATES]
    weights = [weight for _, weight in _STATES]
    base = 4_000_000
    lines = []
    for i in range(n):
        job = base + i
        kind = rng.random()
        if kind < 0.05:
            job_id = f"{base - 1000}_{i % 1000}"
        elif kind < 0.06:
            job_id = f"{base - 2000}_[{i % 50}-{i % 50 + 49}%10]"
        elif kind < 0.07:
            job_id = f"{job}+{i % 3}"
        else:
            job_id = str(job)
        state = rng.choices(states, weights)[0]
        if job_id.endswith("]"):
            state = "PENDING"
        day, hour, minute = 1 + i % 28, rng.randrange(24), rng.randrange(60)
        start = f"2024-06-{day:02d}T{hour:02d}:{minute:02d}:{rng.randrange(60):02d}"
        end = f"2024-06-{day + 1:02d}T{hour:02d}:{minute:02d}:00"
        if state == "PENDING":
            reason = rng.choice(_PENDING_REASONS)
            nodes = ""
            if reason not in ("Resources", "Priority"):
                start = end = "N/A"
        elif state in ("RUNNING", "COMPLETING", "CONFIGURING"):
            reason = "None"
            first = rng.randrange(1, 500)
            count = rng.choice((1, 1, 1, 2, 4, 16))
            nodes = (
                f"node{first:03d}" if count == 1 else f"node[{first:03d}-{first + count - 1:03d}]"
            )
        else:
            reason = rng.choice(_ENDED_REASONS)
            nodes = f"node{rng.randrange(1, 500):03d}"
        name = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        lines.append(f"{job_id}|{state}|{reason}|{start}|{end}|{nodes}|{name}\n")
    return "".join(lines)


_PAST = 1_700_000_000  # control files were written long ago (not "racy", see RACY_NS)


def pod_json(i: int, uid: str) -> dict[str, Any]:
    """Pod ``i`` of a Deployment, as ``GET /api/v1/pods`` returns it."""
    name = f"web-7c9f8d6b5-{i:05d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": "web-7c9f8d6b5-",
            "namespace": "team-a",
            "uid": uid,
            "resourceVersion": str(100_000 + i),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web", "pod-template-hash": "7c9f8d6b5", "tier": "frontend"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7c9f8d6b5",
                    "uid": "7d4c1e0a-0000-4000-8000-000000000001",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
                }
            ],
        },
        "spec": {
            "nodeName": "mobius",
            "schedulerName": "mobius",
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "serviceAccountName": "default",
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.org/team-a/web:1.4.2",
                    "command": ["/bin/web"],
                    "args": ["--port=8080", "--log-level=info"],
                    "env": [
                        {"name": "MODE", "value": "production"},
                        {"name": "REPLICA", "value": str(i)},
                        {
                            "name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                    ],
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "256Mi"},
                        "limits": {"cpu": "1", "memory": "512Mi"},
                    },
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "imagePullPolicy": "IfNotPresent",
                },
                {
                    "name": "sidecar",
                    "image": "registry.example.org/infra/log-shipper:2.0",
                    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                },
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
        "status": {
            "phase": "Pending",
            "qosClass": "Burstable",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    }


def uid_of(i: int) -> str:
    return str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4))


def _put(ctl: Path, name: str, content: str) -> None:
    (ctl / f"{name}.tmp").write_text(content + "\n")
    os.replace(ctl / f"{name}.tmp", ctl / name)


class Fleet:
    """``n`` pods tracked by a kubelet, their jobs in squeue and their folders on disk."""

    def __init__(self, n: int, state_dir: Path, *, seed: int = 0, pending: float | None = None):
        self.rng = random.Random(seed)
        self.paths = PodPaths(state_dir)
        self.store = PodStore()
        self.jobs = JobTable()
        self.uids = [uid_of(i) for i in range(n)]
        raw = msgspec.json.encode({"items": [pod_json(i, uid) for i, uid in enumerate(self.uids)]})
        for pod in msgspec.json.decode(raw, type=dict[str, list[Pod]])["items"]:
            self.store.put(pod)
        del raw
        text = squeue_output(n, seed=seed)
        self.rows: list[SqueueRow] = []
        for uid, line in zip(self.uids, text.splitlines(), strict=True):
            job_id, state, reason, start, end, nodes, _ = line.split("|", 6)
            if pending is not None:
                state = "PENDING" if self.rng.random() < pending else "RUNNING"
            if job_id.endswith("]"):
                job_id = job_id.partition("_")[0]
            self.rows.append(SqueueRow(job_id, state, reason, start, end, nodes, job_name(uid)))
            self.jobs.set(uid, Job(job_id=job_id, submitted_at=0.0))
        self.stamp = _PAST
        for uid, row in zip(self.uids, self.rows, strict=True):
            if row.state not in WAITING:
                self.write_ctl(uid, row.state in ENDED)

    def text(self) -> str:
        return "".join("|".join(map(str, msgspec.structs.astuple(r))) + "\n" for r in self.rows)

    def write_ctl(self, uid: str, ended: bool, *, restarts: int = 0) -> None:
        """The files a job script writes (pinned to an old, distinct mtime)."""
        ctl = self.paths.ctl_dir(uid)
        (ctl / "c").mkdir(parents=True, exist_ok=True)
        _put(ctl, "node", "node017")
        _put(ctl, "pod.ip", "10.88.0.17")
        _put(ctl, "pod.started", "2026-01-01T00:00:05Z")
        for c in ("app", "sidecar"):
            _put(ctl, f"c/{c}.started", "2026-01-01T00:00:06Z")
            if restarts:
                _put(ctl, f"c/{c}.restarts", str(restarts))
            if ended:
                _put(ctl, f"c/{c}.exit", "0 2026-01-01T01:00:00Z")
        self.stamp += 1
        for folder in (ctl, ctl / "c"):
            os.utime(folder, (self.stamp, self.stamp))

    def apply(self, phases: list[tuple[str, str]]) -> None:
        """What the status writer and the pod watch do with sent statuses: a new pod version."""
        for uid, phase in phases:
            pod = self.store.get(uid)
            if pod is None:
                continue
            version = str(int(pod.metadata.resource_version) + 1)
            self.store.put(
                msgspec.structs.replace(
                    pod,
                    metadata=msgspec.structs.replace(pod.metadata, resource_version=version),
                    status=msgspec.structs.replace(pod.status, phase=phase),
                )
            )

    def churn(self, fraction: float) -> None:
        """Move ``fraction`` of the jobs on: pending ones start, running ones restart or end."""
        for i in self.rng.sample(range(len(self.rows)), max(1, int(len(self.rows) * fraction))):
            row, uid = self.rows[i], self.uids[i]
            if row.state in WAITING:
                state, ended = "RUNNING", False
            elif row.state in ENDED:
                state, ended = "PENDING", False  # requeued: its files stay as they were
            else:
                state, ended = self.rng.choice((("RUNNING", False), ("COMPLETED", True)))
            if state != "PENDING":
                self.write_ctl(uid, ended, restarts=self.rng.randrange(1, 5))
            self.rows[i] = msgspec.structs.replace(row, state=state, nodes="node017")


def naive_tick(
    fleet: Fleet, rows: list[SqueueRow], sent: dict[str, bytes], began: float
) -> list[tuple[str, str]]:
    """The poller's tick before the differ (every live pod read and recomputed): the
    ``(uid, phase)`` of the statuses it would send."""
    statuses = naive_statuses(fleet.store, fleet.jobs, fleet.paths, rows, sent, began)
    return [(uid, status["phase"]) for uid, status in statuses]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _memory(n: int, state_dir: Path) -> dict[str, int]:
    """RSS of this process before and after it tracks ``n`` mostly pending pods (2 ticks)."""
    import trio

    from mobius._fast import parse_squeue
    from mobius.slurm.polling import StatusPoller

    gc.collect()
    before = rss_bytes()
    fleet = Fleet(n, state_dir, pending=0.9)
    poller = StatusPoller(store=fleet.store, jobs=fleet.jobs, paths=fleet.paths)

    async def ticks(text: str) -> None:
        for tick in range(3):
            updates = await poller.tick(parse_squeue(text), began=float(tick))
            fleet.apply([(uid, status["phase"]) for uid, status in updates])

    trio.run(ticks, fleet.text())
    fleet.rows = []  # the poller keeps its own snapshot; the generator's copy is not the kubelet's
    gc.collect()
    return {"pods": n, "rss_before": before, "rss_after": rss_bytes()}


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "memory":
        sys.exit("usage: _scale.py memory N STATE_DIR")
    print(json.dumps(_memory(int(sys.argv[2]), Path(sys.argv[3]))))
