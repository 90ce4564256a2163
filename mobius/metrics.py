"""Mobius's own Prometheus metrics, served by the kubelet API at ``/metrics``.

Counters and histograms are module-level (one process, one kubelet) in :data:`REGISTRY`, not the
client library's global registry, so embedding Mobius never collides with its host's metrics.
Gauges that describe current state (pods by phase, jobs by Slurm state, queue depths) are read
when scraped, by a :class:`StateCollector` the supervisor registers for its lifetime.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mobius.state import PodStore

REGISTRY = CollectorRegistry(auto_describe=True)

SLURM_COMMAND_SECONDS = Histogram(
    "mobius_slurm_command_duration_seconds",
    "Time a Slurm command (sbatch, squeue, scancel, sacct, ...) took, by command.",
    ["command"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
SLURM_COMMAND_ERRORS = PromCounter(
    "mobius_slurm_command_errors",
    "Slurm commands that failed (non-zero exit, timeout, not runnable), by command.",
    ["command"],
    registry=REGISTRY,
)
API_REQUESTS = PromCounter(
    "mobius_api_requests",
    "Requests to the Kubernetes API server, by HTTP method and status code (0: no answer).",
    ["method", "code"],
    registry=REGISTRY,
)
PODS_SUBMITTED = PromCounter(
    "mobius_pods_submitted", "Pods handed to Slurm as batch jobs.", registry=REGISTRY
)
POD_FAILURES = PromCounter(
    "mobius_pod_submit_failures",
    "Pods Slurm or the kubelet refused for good (bad spec, flags, volumes...), by reason.",
    ["reason"],
    registry=REGISTRY,
)
ERRORS = PromCounter(
    "mobius_task_errors",
    "Errors a kubelet task recovered from (it logged them and went on), by task.",
    ["task"],
    registry=REGISTRY,
)


class StateCollector(Collector):
    """Gauges read at scrape time: pods by phase, jobs by Slurm state, queue depths."""

    def __init__(
        self,
        *,
        store: PodStore,
        job_states: Callable[[], Mapping[str, int]],
        queues: Mapping[str, Callable[[], int]],
    ):
        self.store = store
        self.job_states = job_states
        self.queues = queues

    def __repr__(self) -> str:
        return f"<StateCollector {len(self.queues)} queues>"

    def collect(self) -> Iterator[Metric]:
        pods = GaugeMetricFamily(
            "mobius_pods", "Pods bound to this node, by phase.", labels=["phase"]
        )
        phases = Counter(p.status.phase or "Pending" for p in self.store)
        for phase in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
            pods.add_metric([phase], phases.pop(phase, 0))
        for phase, n in sorted(phases.items()):
            pods.add_metric([phase], n)
        yield pods
        jobs = GaugeMetricFamily(
            "mobius_jobs",
            "Slurm jobs of this node's pods in the last squeue, by state.",
            labels=["state"],
        )
        for state, n in sorted(self.job_states().items()):
            jobs.add_metric([state], n)
        yield jobs
        depth = GaugeMetricFamily(
            "mobius_queue_depth", "Items waiting in a kubelet queue, by queue.", labels=["queue"]
        )
        for name, size in sorted(self.queues.items()):
            depth.add_metric([name], size())
        yield depth


def render() -> bytes:
    """Every metric, in the Prometheus text format."""
    return generate_latest(REGISTRY)
