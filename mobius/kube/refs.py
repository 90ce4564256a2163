"""Fetch what a pod's environment and volumes refer to: ConfigMaps, Secrets, Services, the node,
PersistentVolumeClaims and the PersistentVolumes bound to them.

The kubelet reads these through watch-based caches; Mobius asks the API server once per
submission (each object at most once, whatever the number of references to it), which costs
little next to an sbatch call. Objects many pods share (Services, the node, claims and their
volumes) go through a :class:`SharedCache`, so a burst of pods asks for each once. A ConfigMap or Secret that does not exist is simply absent from
the result: whether that is an error (and which) is for :func:`mobius.pods.env.container_env`
to say (or for :mod:`mobius.pods.volumes`), since only they know which references are optional.
Secret values and ConfigMap ``binaryData`` are base64-decoded here, at the adapter boundary;
Secret values are never logged.
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
from mobius.models.core import (
    ConfigMap,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Secret,
    Service,
    ServiceList,
)
from mobius.pods.env import Needs, PodRefs, host_ips
from mobius.pods.volumes import pod_needs

T = TypeVar("T")

__all__ = ["SharedCache", "decode_binary_data", "decode_secret", "fetch_refs"]


def _path(*segments: str) -> str:
    return "/api/v1/" + "/".join(quote(s, safe="") for s in segments)


def _b64(values: dict[str, str], what: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in values.items():
        try:
            out[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ParseError(f"{what} key {key!r}", "(value withheld: not base64)") from None
    return out


def decode_secret(secret: Secret) -> dict[str, bytes]:
    """The Secret's values, decoded; ParseError (value withheld) if one is not base64."""
    return _b64(secret.data, f"Secret {secret.metadata.namespace}/{secret.metadata.name}")


def decode_binary_data(cm: ConfigMap) -> dict[str, bytes]:
    """The ConfigMap's ``binaryData``, decoded."""
    return _b64(cm.binary_data, f"ConfigMap {cm.metadata.namespace}/{cm.metadata.name}")


class SharedCache:
    """Objects many pods read alike (a namespace's Services, the node, claims and their
    volumes), kept ``ttl`` seconds so a burst of pods costs one request each rather than one per
    pod: callers asking while a request is in flight wait for its answer, and NotFound is kept
    like an object. ConfigMaps and Secrets are always read fresh."""

    def __init__(self, *, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Any]] = {}
        self._asking: dict[str, trio.Event] = {}

    def __repr__(self) -> str:
        return f"<SharedCache {len(self._entries)} entries ttl={self.ttl}>"

    async def get(self, kube: KubeClient, path: str, type: type[T]) -> T:
        if self.ttl <= 0:
            return cast(T, await kube.get(path, type))
        while True:
            hit = self._entries.get(path)
            if hit is not None and trio.current_time() - hit[0] < self.ttl:
                if isinstance(hit[1], NotFound):
                    raise hit[1]
                return cast(T, hit[1])
            asking = self._asking.get(path)
            if asking is None:
                break
            await asking.wait()  # then take its answer (or ask again if it failed otherwise)
        self._asking[path] = done = trio.Event()
        asked = trio.current_time()
        try:
            value = await kube.get(path, type)
        except NotFound as exc:
            self._entries[path] = (asked, exc)
            raise
        finally:
            del self._asking[path]
            done.set()
        self._entries[path] = (asked, value)
        return cast(T, value)


async def fetch_refs(
    kube: KubeClient,
    pod: Pod,
    *,
    node_name: str,
    what: Needs | None = None,
    cache: SharedCache | None = None,
) -> PodRefs:
    """GET what ``pod`` refers to (``what``, by default
    :func:`~mobius.pods.volumes.pod_needs`: its environment's and its volumes' references).

    Missing ConfigMaps, Secrets, claims and PersistentVolumes are left out; other API errors
    propagate (the submitter retries them).
    """
    what = pod_needs(pod) if what is None else what
    ns = pod.metadata.namespace
    shared = cache or SharedCache(ttl=0.0)
    config_maps: dict[str, dict[str, str]] = {}
    binary: dict[str, dict[str, bytes]] = {}
    for name in sorted(what.config_maps):
        try:
            cm = await kube.get(_path("namespaces", ns, "configmaps", name), ConfigMap)
        except NotFound:
            continue
        config_maps[name] = cm.data
        if cm.binary_data:
            binary[name] = decode_binary_data(cm)
    secrets: dict[str, dict[str, bytes]] = {}
    secret_types: dict[str, str] = {}
    for name in sorted(what.secrets):
        try:
            secret = await kube.get(_path("namespaces", ns, "secrets", name), Secret)
        except NotFound:
            continue
        secrets[name] = decode_secret(secret)
        secret_types[name] = secret.type
    claims: dict[str, PersistentVolumeClaim] = {}
    volumes: dict[str, PersistentVolume] = {}
    for name in sorted(what.claims):
        path = _path("namespaces", ns, "persistentvolumeclaims", name)
        try:
            claims[name] = claim = await shared.get(kube, path, PersistentVolumeClaim)
        except NotFound:
            continue
        bound = claim.spec.volume_name
        if claim.status.phase == "Bound" and bound and bound not in volumes:
            with contextlib.suppress(NotFound):
                volumes[bound] = await shared.get(
                    kube, _path("persistentvolumes", bound), PersistentVolume
                )
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
        config_map_binary=binary,
        secrets=secrets,
        services=tuple(services),
        node_allocatable=allocatable,
        host_ips=ips,
        secret_types=secret_types,
        claims=claims,
        persistent_volumes=volumes,
    )
