"""Fetching what pods refer to: a burst of pods sharing a claim asks the API server for the claim
and its PersistentVolume once; a missing claim is remembered as briefly as an object.

The API server here is a recording stand-in (an httpx MockTransport behind the real
KubeClient), since these tests count requests; the e2e tests use the real one.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing

from mobius.errors import NotFound
from mobius.kube.client import KubeClient
from mobius.kube.credentials import Credentials
from mobius.kube.refs import SharedCache, fetch_refs
from mobius.models import Pod

CLAIM = {
    "metadata": {"name": "data", "namespace": "ns", "uid": "uid-data"},
    "spec": {"volumeName": "pv-1", "accessModes": ["ReadWriteMany"]},
    "status": {"phase": "Bound"},
}
VOLUME = {
    "metadata": {"name": "pv-1"},
    "spec": {
        "claimRef": {"namespace": "ns", "name": "data", "uid": "uid-data"},
        "hostPath": {"path": "/shared/data"},
    },
}


class ApiServer:
    """Answers GETs from ``objects`` (by path), 404 otherwise, and counts them."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.asked: Counter[str] = Counter()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.asked[request.url.path] += 1
        await trio.sleep(0.01)  # every pod of the burst asks while the first request is out
        found = self.objects.get(request.url.path)
        if found is None:
            status = {"kind": "Status", "reason": "NotFound", "message": "not found", "code": 404}
            return httpx.Response(404, content=json.dumps(status).encode())
        return httpx.Response(200, content=json.dumps(found).encode())


@pytest.fixture
async def api() -> Any:
    server = ApiServer(
        {
            "/api/v1/namespaces/ns/persistentvolumeclaims/data": CLAIM,
            "/api/v1/persistentvolumes/pv-1": VOLUME,
            "/api/v1/namespaces/default/services/kubernetes": {"metadata": {"name": "kubernetes"}},
        }
    )
    kube = KubeClient(Credentials(server="https://api.test"))
    await kube.aclose()
    kube._http = httpx.AsyncClient(
        base_url="https://api.test", transport=httpx.MockTransport(server.handle)
    )
    async with kube:
        yield server, kube


def pod(name: str, claim: str = "data") -> Pod:
    raw = {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"},
        "spec": {
            "enableServiceLinks": False,
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }
    return msgspec.convert(raw, Pod)


async def test_a_burst_of_pods_sharing_a_claim_asks_once(api: tuple[ApiServer, KubeClient]) -> None:
    server, kube = api
    cache = SharedCache()
    found = []

    async def submit(i: int) -> None:
        refs = await fetch_refs(kube, pod(f"p{i}"), node_name="", cache=cache)
        found.append(refs)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(submit, i)
    assert len(found) == 20
    assert all(r.claims["data"].spec.volume_name == "pv-1" for r in found)
    assert all(r.persistent_volumes["pv-1"].spec.host_path is not None for r in found)
    assert server.asked["/api/v1/namespaces/ns/persistentvolumeclaims/data"] == 1
    assert server.asked["/api/v1/persistentvolumes/pv-1"] == 1


async def test_a_missing_claim_is_remembered_briefly(
    api: tuple[ApiServer, KubeClient], autojump_clock: trio.testing.MockClock
) -> None:
    server, kube = api
    cache = SharedCache(ttl=2.0)
    path = "/api/v1/namespaces/ns/persistentvolumeclaims/late"
    for _ in range(3):
        refs = await fetch_refs(kube, pod("p", claim="late"), node_name="", cache=cache)
        assert refs.claims == {}
    assert server.asked[path] == 1
    with pytest.raises(NotFound):
        await cache.get(kube, path, dict)
    await trio.sleep(2.0)
    server.objects[path] = {**CLAIM, "metadata": {"name": "late", "namespace": "ns"}}
    refs = await fetch_refs(kube, pod("p", claim="late"), node_name="", cache=cache)
    assert "late" in refs.claims
    assert server.asked[path] == 2
