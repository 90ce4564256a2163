"""Usage figures: the job script's sampler (run for real under bash), /stats/summary,
/metrics/resource (parsed with the Prometheus client's own parser), metrics.k8s.io objects and
label selectors."""

from __future__ import annotations

import datetime
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mobius.kubelet.resources import ResourceEndpoints
from mobius.kubelet.stats import (
    SelectorError,
    Usage,
    label_matcher,
    parse_usage,
    pod_metrics,
    read_usage,
    resource_metrics,
    summary,
)
from mobius.models import Pod
from mobius.pods.script import SHELL_USAGE_SAMPLER
from mobius.state import PodPaths, PodStore

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def running_pod(
    name: str, uid: str, containers: list[str], labels: dict[str, str] | None = None
) -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "labels": labels or {}},
            "spec": {"containers": [{"name": c, "image": "busybox"} for c in containers]},
            "status": {
                "phase": "Running",
                "startTime": "2026-01-02T03:00:00Z",
                "containerStatuses": [
                    {"name": c, "state": {"running": {"startedAt": "2026-01-02T03:00:01Z"}}}
                    for c in containers
                ],
            },
        },
        Pod,
    )


def write_usage(paths: PodPaths, uid: str, container: str, text: str) -> None:
    d = paths.pod_dir(uid) / "usage"
    d.mkdir(parents=True, exist_ok=True)
    (d / container).write_text(text)


# --- the sampler, for real ----------------------------------------------------------------------


def test_sampler_measures_each_container_tree_and_leaves_out_log_readers(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    (ctl / "c").mkdir(parents=True)
    script = "\n".join(
        [
            "set -u",
            f"CTL={ctl}",
            f"POD_DIR={tmp_path}",
            """put() { printf '%s\\n' "$2" >"$CTL/$1.tmp" && mv -f "$CTL/$1.tmp" "$CTL/$1"; }""",
            SHELL_USAGE_SAMPLER,
            # "busy": a container whose runtime wrote its first process's pid (podman --pidfile).
            "( while :; do :; done ) & echo $! >$CTL/c/busy.pid",
            # "idle": a container found through its shell, whose busy log reader must not count.
            '( ( while :; do :; done ) & r=$!; ( sleep 600 ) & put c/idle.shell "$BASHPID $r"; wait ) &',
            "usage_sampler 1 busy idle </dev/null >/dev/null 2>&1 &",
            "wait",
        ]
    )
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 60  # a hang guard, not a timing check
        samples: dict[str, Usage] = {}
        while time.monotonic() < deadline:
            for name in ("busy", "idle"):
                f = tmp_path / "usage" / name
                if f.exists() and (u := parse_usage(f.read_text())) and u.previous_time_us:
                    samples[name] = u
            if len(samples) == 2 and samples["busy"].cpu_ns > 0:
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    busy, idle = samples["busy"], samples["idle"]
    assert busy.cpu_ns > 0
    assert busy.nano_cores is not None
    assert busy.nano_cores > 0
    assert busy.memory_bytes > 0
    assert busy.time_us > busy.previous_time_us > 0
    # The reader spun as hard as the busy container; leaving it out keeps "idle" far below.
    assert idle.cpu_ns < busy.cpu_ns


# --- parsing and reports ------------------------------------------------------------------------


def test_usage_lines_and_rates() -> None:
    u = parse_usage("2000000 3000000000 4096 1000000 1000000000\n")
    assert u == Usage(2_000_000, 3_000_000_000, 4096, 1_000_000, 1_000_000_000)
    assert u.nano_cores == 2_000_000_000  # 2 s of CPU in 1 s: two cores
    assert parse_usage("2000000 3 4 0 0").nano_cores is None  # no previous sample yet
    assert parse_usage("2000000 3 4 1000000 9").nano_cores is None  # restarted: counter went back
    for bad in ("", "1 2 3", "1 2 3 4 x", "1 2 3 4 5 6", "-1 2 3 4 5"):
        assert parse_usage(bad) is None


def test_read_usage_takes_running_containers_only(tmp_path: Path) -> None:
    paths = PodPaths(tmp_path)
    a = running_pod("a", "u1", ["main", "side"])
    done = msgspec.structs.replace(a, status=msgspec.structs.replace(a.status, phase="Succeeded"))
    done = msgspec.structs.replace(
        done, metadata=msgspec.structs.replace(a.metadata, uid="u2", name="b")
    )
    write_usage(paths, "u1", "main", "2000000 3000000000 1048576 1000000 2000000000")
    write_usage(paths, "u1", "side", "garbage")
    write_usage(paths, "u2", "main", "2000000 3000000000 1048576 1000000 2000000000")
    usages = read_usage([a, done], paths)
    assert [(u.pod.metadata.name, [c.name for c in u.containers]) for u in usages] == [
        ("a", ["main"])
    ]


def test_summary_metrics_resource_and_pod_metrics(tmp_path: Path) -> None:
    paths = PodPaths(tmp_path)
    pod = running_pod("web", "u1", ["app", "log"])
    write_usage(paths, "u1", "app", "2000000 3000000000 2097152 1000000 2500000000")
    write_usage(paths, "u1", "log", "2000000 1000000000 1048576 1000000 1000000000")
    usages = read_usage([pod], paths)

    s: Any = summary(usages, node_name="n1", start_time="2026-01-01T00:00:00Z", now=NOW)
    assert s["node"]["nodeName"] == "n1"
    assert s["node"]["cpu"]["usageNanoCores"] == 500_000_000
    assert s["node"]["memory"]["workingSetBytes"] == 3 * 1048576
    (p,) = s["pods"]
    assert p["podRef"] == {"name": "web", "namespace": "ns", "uid": "u1"}
    assert p["cpu"]["usageCoreNanoSeconds"] == 4_000_000_000
    assert {c["name"]: c["cpu"]["usageNanoCores"] for c in p["containers"]} == {
        "app": 500_000_000,
        "log": 0,
    }

    text = resource_metrics(usages, now=NOW).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    cpu = {s.labels["container"]: s for s in families["container_cpu_usage_seconds"].samples}
    assert cpu["app"].value == 3.0
    assert cpu["app"].labels == {"container": "app", "pod": "web", "namespace": "ns"}
    assert cpu["app"].timestamp == 2.0  # the sample's own time, as the kubelet stamps it
    assert "container_cpu_usage_seconds_total{" in text  # the name metrics-server looks for
    mem = {
        s.labels["container"]: s.value
        for s in families["container_memory_working_set_bytes"].samples
    }
    assert mem == {"app": 2097152.0, "log": 1048576.0}
    (pod_cpu,) = families["pod_cpu_usage_seconds"].samples
    assert pod_cpu.value == 4.0
    (scrape,) = families["resource_scrape_error"].samples
    assert scrape.value == 0
    starts = families["container_start_time_seconds"].samples
    assert {s.value for s in starts} == {
        datetime.datetime(2026, 1, 2, 3, 0, 1, tzinfo=datetime.UTC).timestamp()
    }

    m: Any = pod_metrics(usages[0])
    assert m["kind"] == "PodMetrics"
    assert m["metadata"]["name"] == "web"
    assert {c["name"]: c["usage"] for c in m["containers"]} == {
        "app": {"cpu": "500000000n", "memory": "2048Ki"},
        "log": {"cpu": "0n", "memory": "1024Ki"},
    }


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app, !tier", {"app": "x"}, True),
        ("app, !tier", {"app": "x", "tier": "y"}, False),
        ("env in (a, b),app notin (x)", {"env": "b", "app": "y"}, True),
        ("env in (a,b)", {}, False),
        ("example.com/role=front", {"example.com/role": "front"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert label_matcher(selector)(labels) is matches


@pytest.mark.parametrize("bad", ["app=", "=x", "!app=x", "app in a", "a b"])
def test_bad_selectors_are_refused(bad: str) -> None:
    if bad == "app=":  # an empty value is a valid selector in Kubernetes
        assert label_matcher(bad)({"app": ""})
        return
    with pytest.raises(SelectorError):
        label_matcher(bad)


# --- the routes ---------------------------------------------------------------------------------


async def test_routes_answer_as_kubelet_and_metrics_api(tmp_path: Path) -> None:
    from starlette.applications import Starlette

    paths, store = PodPaths(tmp_path), PodStore()
    store.put(running_pod("web", "u1", ["app"], labels={"app": "web"}))
    store.put(running_pod("db", "u2", ["app"], labels={"app": "db"}))
    write_usage(paths, "u1", "app", "2000000 3000000000 2097152 1000000 2500000000")
    write_usage(paths, "u2", "app", "2000000 3000000000 2097152 1000000 2500000000")
    app = Starlette(
        routes=ResourceEndpoints(store=store, paths=paths, node_name="n1", now=lambda: NOW).routes()
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k") as c:
        pods = (await c.get("/pods")).json()
        assert pods["kind"] == "PodList"
        assert {p["metadata"]["name"] for p in pods["items"]} == {"web", "db"}
        base = "/apis/metrics.k8s.io/v1beta1"
        listed = (
            await c.get(f"{base}/namespaces/ns/pods", params={"labelSelector": "app=web"})
        ).json()
        assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
        assert (await c.get(f"{base}/namespaces/ns/pods/db")).json()["containers"][0]["usage"][
            "cpu"
        ] == "500000000n"
        missing = await c.get(f"{base}/namespaces/other/pods/db")
        assert missing.status_code == 404
        assert missing.json()["reason"] == "NotFound"
        assert (
            await c.get(f"{base}/pods", params={"labelSelector": "app in (x"})
        ).status_code == 400
        node = (await c.get(f"{base}/nodes/n1")).json()
        assert node["usage"] == {"cpu": "1000000000n", "memory": "4096Ki"}
        assert (await c.get(f"{base}/nodes/other")).status_code == 404
        resources = (await c.get(base)).json()
        assert {r["name"] for r in resources["resources"]} == {"nodes", "pods"}
        assert (await c.get("/apis")).json()["groups"][0]["name"] == "metrics.k8s.io"
        assert (await c.get("/stats/summary")).json()["node"]["nodeName"] == "n1"
        assert b"pod_memory_working_set_bytes" in (await c.get("/metrics/resource")).content
