"""GET /containerLogs against files laid out as the job script writes them."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import msgspec
import trio

from mobius.kubelet.server import build_app
from mobius.models import Pod
from mobius.pods.logformat import encode
from mobius.state import PodPaths, PodStore

T0 = 1_700_000_000_000_000_000


def _setup(tmp_path: Path) -> tuple[PodStore, PodPaths, Path]:
    store, paths = PodStore(), PodPaths(tmp_path)
    pod = msgspec.convert({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"initContainers": [{"name": "init", "image": "x"}],
                 "containers": [{"name": "c", "image": "x"}, {"name": "d", "image": "x"}]},
        "status": {"phase": "Running"},
    }, Pod)
    store.put(pod)
    pod_dir = paths.pod_dir("u1")
    (pod_dir / "logs" / "c").mkdir(parents=True)
    (pod_dir / "ctl" / "c").mkdir(parents=True)
    return store, paths, pod_dir


def _client(store: PodStore, paths: PodPaths) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(store=store, paths=paths)),
                             base_url="http://kubelet")


async def test_errors_like_the_kubelet(tmp_path: Path) -> None:
    store, paths, pod_dir = _setup(tmp_path)
    async with _client(store, paths) as client:
        r = await client.get("/containerLogs/ns/q/c")
        assert (r.status_code, r.text) == (404, 'pod "q" does not exist\n')
        r = await client.get("/containerLogs/ns/p/x")
        assert (r.status_code, r.text) == (
            404, 'container "x" in pod "p" is not valid; choose one of: [init c d]\n')
        r = await client.get("/containerLogs/ns/p/d")
        assert (r.status_code, r.text) == (
            400, 'container "d" in pod "p" is waiting to start: PodInitializing\n')
        r = await client.get("/containerLogs/ns/p/init")
        assert r.text.endswith("waiting to start: ContainerCreating\n")
        (pod_dir / "logs" / "c" / "0.log").write_bytes(encode("stdout", b"a\nb\nc\n", ns=T0))
        r = await client.get("/containerLogs/ns/p/c", params={"previous": "true"})
        assert (r.status_code, r.text) == (400, 'previous terminated container "c" in pod "p" not found\n')
        r = await client.get("/containerLogs/ns/p/c", params={"tailLines": "x"})
        assert r.status_code == 400


async def test_runs_previous_and_tail(tmp_path: Path) -> None:
    store, paths, pod_dir = _setup(tmp_path)
    logs = pod_dir / "logs" / "c"
    (logs / "0.log").write_bytes(encode("stdout", b"first\n", ns=T0))
    big = b"".join(b"line %d\n" % i for i in range(20000))
    (logs / "1.log").write_bytes(encode("stderr", big, ns=T0))
    (pod_dir / "ctl" / "c" / "c.restarts").write_text("1\n")
    async with _client(store, paths) as client:
        assert (await client.get("/containerLogs/ns/p/c")).content == big
        assert (await client.get("/containerLogs/ns/p/c?previous=true")).text == "first\n"
        r = await client.get("/containerLogs/ns/p/c?tailLines=2")
        assert r.text == "line 19998\nline 19999\n"
        r = await client.get("/containerLogs/ns/p/c?tailLines=2&timestamps=true")
        assert r.text.startswith("2023-11-14T22:13:20.000000000Z line 19998\n")
        assert (await client.get("/containerLogs/ns/p/c?limitBytes=8")).text == "line 0\nl"


async def test_follow_until_the_exit_record(tmp_path: Path) -> None:
    store, paths, pod_dir = _setup(tmp_path)
    log = pod_dir / "logs" / "c" / "0.log"
    ctl = pod_dir / "ctl" / "c"
    (ctl / "c.exit").write_text("0 x\n")  # of an earlier run ...
    os.utime(ctl / "c.exit", ns=(T0, T0))
    (ctl / "c.started").write_text("x\n")  # ... older than this run's start
    log.write_bytes(encode("stdout", b"one\n", ns=T0))
    got: list[bytes] = []

    async def writer() -> None:
        await trio.sleep(0.3)
        with log.open("ab") as f:
            f.write(encode("stderr", b"two\n", ns=T0 + 1))
        await trio.sleep(0.3)
        (ctl / "c.exit").write_text("0 y\n")

    async with _client(store, paths) as client, trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        with trio.fail_after(10):
            async with client.stream("GET", "/containerLogs/ns/p/c?follow=true") as r:
                async for chunk in r.aiter_bytes():
                    got.append(chunk)
    # (httpx's ASGI transport buffers the body: that lines come as written, the e2e test shows)
    assert b"".join(got) == b"one\ntwo\n"
