"""Fetch what a pod's environment refers to: ConfigMaps, Secrets, Services, the node.

The kubelet reads these through watch-based caches; Mobius asks the API server once per
submission (each object at most once, whatever the number of references to it), which costs
little next to an sbatch call. A ConfigMap or Secret that does not exist is simply absent from
the result: whether that is an error (and which) is for :func:`mobius.pods.env.container_env`
to say, since only it knows which references are optional. Secret values are base64-decoded
here, at the adapter boundary; they are never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Any, TypeVar, cast
from urllib.parse import quote

import trio

from mobius.errors import NotFound, ParseError
from mobius.kube.client import KubeClient
from mobius.models import Pod
from mobius.models.core import ConfigMap, Node, Secret, Service, ServiceList
from mobius.pods.env import Needs, PodRefs, host_ips, needs

T = TypeVar("T")

__all__ = ["fetch_refs"]


def _path(*segments: str) -> str:
    return "/api/v1/" + "/".join(quote(s, safe="") for s in segments)


def _decode(secret: Secret) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in secret.data.items():
        try:
            out[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            where = f"Secret {secret.metadata.namespace}/{secret.metadata.name} key {key!r}"
            raise ParseError(where, "(value withheld: not base64)") from None
    return out


class SharedCache:
    """Objects many pods read alike (a namespace's Services, the node), kept ``ttl`` seconds so
    a burst of pods costs one request each rather than one per pod. ConfigMaps and Secrets are
    always read fresh."""

    def __init__(self, *, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Any]] = {}

    def __repr__(self) -> str:
        return f"<SharedCache {len(self._entries)} entries ttl={self.ttl}>"

    async def get(self, kube: KubeClient, path: str, type: type[T]) -> T:
        now = trio.current_time()
        hit = self._entries.get(path)
        if hit is not None and now - hit[0] < self.ttl:
            return cast(T, hit[1])
        value = await kube.get(path, type)
        self._entries[path] = (now, value)
        return cast(T, value)


async def fetch_refs(
    kube: KubeClient,
    pod: Pod,
    *,
    node_name: str,
    what: Needs | None = None,
    cache: SharedCache | None = None,
) -> PodRefs:
    """GET what ``pod`` refers to (``what``, by default :func:`needs` of the pod).

    Missing ConfigMaps and Secrets are left out; other API errors propagate (the submitter
    retries them).
    """
    what = needs(pod) if what is None else what
    ns = pod.metadata.namespace
    shared = cache or SharedCache(ttl=0.0)
    config_maps: dict[str, dict[str, str]] = {}
    for name in sorted(what.config_maps):
        try:
            cm = await kube.get(_path("namespaces", ns, "configmaps", name), ConfigMap)
        except NotFound:
            continue
        config_maps[name] = cm.data
    secrets: dict[str, dict[str, bytes]] = {}
    for name in sorted(what.secrets):
        try:
            secret = await kube.get(_path("namespaces", ns, "secrets", name), Secret)
        except NotFound:
            continue
        secrets[name] = _decode(secret)
    services: list[Service] = []
    if what.service_links:
        listed = await shared.get(kube, _path("namespaces", ns, "services"), ServiceList)
        services += listed.items  # list items carry their namespace
    if not what.service_links or ns != "default":
        with contextlib.suppress(NotFound):
            services.append(
                await shared.get(
                    kube, _path("namespaces", "default", "services", "kubernetes"), Service
                )
            )
    allocatable: dict[str, str] = {}
    ips: tuple[str, ...] = ()
    if what.node and node_name:
        node = await shared.get(kube, _path("nodes", node_name), Node)
        allocatable = node.status.allocatable
        ips = host_ips((a.type, a.address) for a in node.status.addresses)
    return PodRefs(
        config_maps=config_maps,
        secrets=secrets,
        services=tuple(services),
        node_allocatable=allocatable,
        host_ips=ips,
    )
