"""Resource usage of running pods, as the kubelet reports it: ``/stats/summary``,
``/metrics/resource`` (what metrics-server scrapes) and the ``metrics.k8s.io`` objects
(``kubectl top``).

The numbers come from the jobs themselves: each job script samples its containers' processes
in /proc and writes ``usage/<container>`` in the pod folder (see :data:`mobius.pods.script.SHELL_USAGE_SAMPLER`)
on the storage the Slurm nodes share. A sample holds the previous one too, so the CPU rate
(nanocores) needs no state here. :func:`read_usage` does the file I/O (run it in a thread);
everything else is pure.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from mobius.models import Pod
from mobius.state import PodPaths

WINDOW_SECONDS = 15


class Usage(msgspec.Struct, frozen=True):
    """One sample of a container: cumulative CPU and current memory, and the sample before."""

    time_us: int
    cpu_ns: int
    memory_bytes: int
    previous_time_us: int = 0
    previous_cpu_ns: int = 0

    @property
    def time(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.time_us / 1e6, datetime.UTC)

    @property
    def nano_cores(self) -> int | None:
        """The CPU rate between the two samples; None without a usable previous sample."""
        dt = self.time_us - self.previous_time_us
        if not self.previous_time_us or dt <= 0 or self.cpu_ns < self.previous_cpu_ns:
            return None
        return (self.cpu_ns - self.previous_cpu_ns) * 1_000_000 // dt  # ns per µs -> nanocores


def parse_usage(text: str) -> Usage | None:
    """A ``.usage`` file's content; None when it is not one (half-written files never are: the
    job writes them atomically, but a garbled one must not break a scrape)."""
    parts = text.split()
    if len(parts) != 5 or not all(p.isdigit() for p in parts):
        return None
    t, cpu, mem, pt, pcpu = (int(p) for p in parts)
    return Usage(t, cpu, mem, pt, pcpu)


class ContainerUsage(msgspec.Struct, frozen=True):
    name: str
    started_at: str | None
    usage: Usage


class PodUsage(msgspec.Struct, frozen=True):
    pod: Pod
    containers: tuple[ContainerUsage, ...]

    @property
    def cpu_ns(self) -> int:
        return sum(c.usage.cpu_ns for c in self.containers)

    @property
    def memory_bytes(self) -> int:
        return sum(c.usage.memory_bytes for c in self.containers)

    @property
    def nano_cores(self) -> int | None:
        rates = [c.usage.nano_cores for c in self.containers]
        return None if any(r is None for r in rates) else sum(r or 0 for r in rates)

    @property
    def time(self) -> datetime.datetime:
        return max(c.usage.time for c in self.containers)


def _running(pod: Pod) -> dict[str, str | None]:
    """Running containers of a pod (init containers too) -> their start time."""
    out: dict[str, str | None] = {}
    for st in (*pod.status.init_container_statuses, *pod.status.container_statuses):
        running = (st.get("state") or {}).get("running")
        if isinstance(running, dict) and isinstance(st.get("name"), str):
            out[st["name"]] = running.get("startedAt")
    return out


def read_usage(pods: Iterable[Pod], paths: PodPaths) -> list[PodUsage]:
    """The latest samples of every running container of ``pods`` (blocking file reads)."""
    found: list[PodUsage] = []
    for pod in pods:
        if pod.status.phase != "Running":
            continue
        containers = []
        for name, started in _running(pod).items():
            try:
                text = (paths.pod_dir(pod.metadata.uid) / "usage" / name).read_text()
            except (OSError, UnicodeDecodeError):
                continue
            if (usage := parse_usage(text)) is not None:
                containers.append(ContainerUsage(name, started, usage))
        if containers:
            found.append(PodUsage(pod, tuple(containers)))
    return found


def _rfc3339(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu(usage: Usage | PodUsage, time: datetime.datetime) -> dict[str, object]:
    cpu: dict[str, object] = {"time": _rfc3339(time), "usageCoreNanoSeconds": usage.cpu_ns}
    if (rate := usage.nano_cores) is not None:
        cpu["usageNanoCores"] = rate
    return cpu


def _memory(memory: int, time: datetime.datetime) -> dict[str, object]:
    return {
        "time": _rfc3339(time),
        "usageBytes": memory,
        "workingSetBytes": memory,
        "rssBytes": memory,
    }


def summary(
    usages: Sequence[PodUsage], *, node_name: str, start_time: str, now: datetime.datetime
) -> dict[str, object]:
    """The kubelet's ``/stats/summary`` (``stats/v1alpha1``). The node is the sum of its pods:
    it stands for the Slurm cluster, whose other users' jobs are none of its business."""
    pods = []
    for pu in usages:
        t = pu.time
        pods.append(
            {
                "podRef": {
                    "name": pu.pod.metadata.name,
                    "namespace": pu.pod.metadata.namespace,
                    "uid": pu.pod.metadata.uid,
                },
                "startTime": pu.pod.status.start_time,
                "containers": [
                    {
                        "name": c.name,
                        "startTime": c.started_at,
                        "cpu": _cpu(c.usage, c.usage.time),
                        "memory": _memory(c.usage.memory_bytes, c.usage.time),
                    }
                    for c in pu.containers
                ],
                "cpu": _cpu(pu, t),
                "memory": _memory(pu.memory_bytes, t),
            }
        )
    rates = [pu.nano_cores for pu in usages]
    node_cpu: dict[str, object] = {
        "time": _rfc3339(now),
        "usageCoreNanoSeconds": sum(pu.cpu_ns for pu in usages),
    }
    if all(r is not None for r in rates):
        node_cpu["usageNanoCores"] = sum(r or 0 for r in rates)
    return {
        "node": {
            "nodeName": node_name,
            "startTime": start_time,
            "cpu": node_cpu,
            "memory": _memory(sum(pu.memory_bytes for pu in usages), now),
            "systemContainers": [],
        },
        "pods": pods,
    }


class _ResourceCollector(Collector):
    """The metric families of the kubelet's ``/metrics/resource``, each sample stamped with the
    time it was taken (as the kubelet does), so metrics-server computes rates correctly."""

    def __init__(self, usages: Sequence[PodUsage], now: datetime.datetime):
        self.usages = usages
        self.now = now

    def collect(self) -> Iterator[Metric]:
        labels = ["container", "pod", "namespace"]
        c_cpu = CounterMetricFamily(
            "container_cpu_usage",
            "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
            labels=labels,
            unit="seconds",
        )
        c_mem = GaugeMetricFamily(
            "container_memory_working_set_bytes",
            "[STABLE] Current working set of the container in bytes",
            labels=labels,
        )
        c_start = GaugeMetricFamily(
            "container_start_time_seconds",
            "[STABLE] Start time of the container since unix epoch in seconds",
            labels=labels,
        )
        p_cpu = CounterMetricFamily(
            "pod_cpu_usage",
            "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
            labels=["pod", "namespace"],
            unit="seconds",
        )
        p_mem = GaugeMetricFamily(
            "pod_memory_working_set_bytes",
            "[STABLE] Current working set of the pod in bytes",
            labels=["pod", "namespace"],
        )
        for pu in self.usages:
            meta = pu.pod.metadata
            for c in pu.containers:
                ts = c.usage.time_us / 1e6
                values = [c.name, meta.name, meta.namespace]
                c_cpu.add_metric(values, c.usage.cpu_ns / 1e9, timestamp=ts)
                c_mem.add_metric(values, c.usage.memory_bytes, timestamp=ts)
                if c.started_at and (started := _parse_time(c.started_at)):
                    c_start.add_metric(values, started.timestamp(), timestamp=ts)
            ts = pu.time.timestamp()
            p_cpu.add_metric([meta.name, meta.namespace], pu.cpu_ns / 1e9, timestamp=ts)
            p_mem.add_metric([meta.name, meta.namespace], pu.memory_bytes, timestamp=ts)
        now = self.now.timestamp()
        n_cpu = CounterMetricFamily(
            "node_cpu_usage",
            "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
            unit="seconds",
        )
        n_cpu.add_metric([], sum(pu.cpu_ns for pu in self.usages) / 1e9, timestamp=now)
        n_mem = GaugeMetricFamily(
            "node_memory_working_set_bytes", "[STABLE] Current working set of the node in bytes"
        )
        n_mem.add_metric([], sum(pu.memory_bytes for pu in self.usages), timestamp=now)
        scrape = GaugeMetricFamily(
            "resource_scrape_error",
            "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
        )
        scrape.add_metric([], 0)
        yield from (c_start, c_cpu, c_mem, n_cpu, n_mem, p_cpu, p_mem, scrape)


def resource_metrics(usages: Sequence[PodUsage], *, now: datetime.datetime) -> bytes:
    """``/metrics/resource`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ResourceCollector(usages, now))
    return generate_latest(registry)


def _parse_time(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- metrics.k8s.io ---------------------------------------------------------------------------


class SelectorError(ValueError):
    """A label selector this server cannot read."""


_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)"
    r"|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


class Requirement(msgspec.Struct, frozen=True):
    """One requirement of a label selector: ``op`` is exists, !exists, =, !=, in or notin."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return value is not None
            case "!exists":
                return value is None
            case "=" | "in":
                return value in self.values
            case _:  # "!=", "notin": a missing label matches, as in Kubernetes
                return value not in self.values


def parse_selector(selector: str) -> tuple[Requirement, ...]:
    """A Kubernetes label selector (``a=b,c!=d,e,!f,g in (h,i),j notin (k)``)."""
    out = []
    for part in _split_selector(selector):
        m = _REQUIREMENT.match(part)
        if not m or (m["neg"] and (m["op"] or m["setop"])):
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        key = m["key"]
        if m["neg"]:
            out.append(Requirement(key, "!exists"))
        elif m["op"]:
            op = "!=" if m["op"] == "!=" else "="
            out.append(Requirement(key, op, frozenset([m["value"]])))
        elif m["setop"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            out.append(Requirement(key, m["setop"], values))
        else:
            out.append(Requirement(key, "exists"))
    return tuple(out)


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """The selector as a predicate over a label map; SelectorError if it cannot be read."""
    requirements = parse_selector(selector)
    return lambda labels: all(r.matches(labels) for r in requirements)


def _cpu_quantity(nano_cores: int | None) -> str:
    return f"{nano_cores or 0}n"


def _memory_quantity(memory: int) -> str:
    return f"{memory // 1024}Ki"


def pod_metrics(pu: PodUsage) -> dict[str, object]:
    """One ``PodMetrics`` object of ``metrics.k8s.io/v1beta1``."""
    meta = pu.pod.metadata
    return {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "creationTimestamp": _rfc3339(pu.time),
            "labels": meta.labels,
        },
        "timestamp": _rfc3339(pu.time),
        "window": f"{WINDOW_SECONDS}s",
        "containers": [
            {
                "name": c.name,
                "usage": {
                    "cpu": _cpu_quantity(c.usage.nano_cores),
                    "memory": _memory_quantity(c.usage.memory_bytes),
                },
            }
            for c in pu.containers
        ],
    }


def node_metrics(
    usages: Sequence[PodUsage], *, node_name: str, labels: dict[str, str], now: datetime.datetime
) -> dict[str, object]:
    """The ``NodeMetrics`` of the virtual node: the sum of its pods."""
    rates = [pu.nano_cores for pu in usages]
    return {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": node_name, "creationTimestamp": _rfc3339(now), "labels": labels},
        "timestamp": _rfc3339(now),
        "window": f"{WINDOW_SECONDS}s",
        "usage": {
            "cpu": _cpu_quantity(sum(r or 0 for r in rates)),
            "memory": _memory_quantity(sum(pu.memory_bytes for pu in usages)),
        },
    }
