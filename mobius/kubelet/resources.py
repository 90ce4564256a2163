"""The kubelet's read-only endpoints about pods and their usage, and ``metrics.k8s.io``.

- ``/pods``: the pods bound to this node, as this kubelet knows them;
- ``/stats/summary`` and ``/metrics/resource``: what metrics-server scrapes from a kubelet;
- ``/apis/metrics.k8s.io/v1beta1/...``: the resource metrics API itself, so ``kubectl top``
  works without a metrics-server. The API server's aggregation layer proxies it here once
  :func:`register_metrics_api` has registered the APIService (pointing at an ExternalName
  Service naming the kubelet's address). A cluster that already has a metrics API (its own
  metrics-server) keeps it: the registration never replaces an APIService it did not make.

Usage figures come from the jobs' own samples (:mod:`mobius.kubelet.stats`).
"""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mobius.errors import ApiError, NotFound
from mobius.kube.client import KubeClient
from mobius.kubelet.stats import (
    PodUsage,
    SelectorError,
    label_matcher,
    node_metrics,
    pod_metrics,
    read_usage,
    resource_metrics,
    summary,
)
from mobius.models import Pod
from mobius.state import PodPaths, PodStore

log = logging.getLogger(__name__)

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
SERVICE_NAMESPACE, SERVICE_NAME = "kube-system", "mobius-metrics"
SERVICE_DNS_NAME = f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc"
"""The name the aggregation layer expects in the kubelet's serving certificate."""
APISERVICE = f"{VERSION}.{GROUP}"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mobius"}

_pods_encoder = msgspec.json.Encoder()


def _status(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status_code=code,
    )


class ResourceEndpoints:
    """The handlers, over the pod store and the pods' folders."""

    def __init__(
        self,
        *,
        store: PodStore,
        paths: PodPaths,
        node_name: str,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ):
        self.store = store
        self.paths = paths
        self.node_name = node_name
        self.now = now
        self.started = now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def __repr__(self) -> str:
        return f"<ResourceEndpoints node={self.node_name}>"

    def routes(self) -> list[BaseRoute]:
        base = f"/apis/{GROUP_VERSION}"
        return [
            Route("/pods", self.pods),
            Route("/pods/", self.pods),
            Route("/stats/summary", self.stats_summary),
            Route("/metrics/resource", self.metrics_resource),
            Route("/apis", self.api_groups),
            Route(f"/apis/{GROUP}", self.api_group),
            Route(base, self.api_resources),
            Route(f"{base}/nodes", self.nodes),
            Route(f"{base}/nodes/{{name}}", self.nodes),
            Route(f"{base}/pods", self.pod_list),
            Route(f"{base}/namespaces/{{namespace}}/pods", self.pod_list),
            Route(f"{base}/namespaces/{{namespace}}/pods/{{name}}", self.pod_get),
        ]

    async def usage(self, pods: list[Pod] | None = None) -> list[PodUsage]:
        chosen = list(self.store) if pods is None else pods
        return await trio.to_thread.run_sync(read_usage, chosen, self.paths)

    # --- kubelet endpoints ---

    async def pods(self, request: Request) -> Response:
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": list(self.store)}
        return Response(_pods_encoder.encode(body), media_type="application/json")

    async def stats_summary(self, request: Request) -> Response:
        usages = await self.usage()
        return JSONResponse(
            summary(usages, node_name=self.node_name, start_time=self.started, now=self.now())
        )

    async def metrics_resource(self, request: Request) -> Response:
        usages = await self.usage()
        return Response(
            resource_metrics(usages, now=self.now()),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    # --- metrics.k8s.io ---

    async def api_groups(self, request: Request) -> Response:
        return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group()]})

    async def api_group(self, request: Request) -> Response:
        return JSONResponse({"kind": "APIGroup", "apiVersion": "v1", **self._group()})

    def _group(self) -> dict[str, Any]:
        version = {"groupVersion": GROUP_VERSION, "version": VERSION}
        return {"name": GROUP, "versions": [version], "preferredVersion": version}

    async def api_resources(self, request: Request) -> Response:
        def resource(name: str, kind: str, namespaced: bool) -> dict[str, Any]:
            return {
                "name": name,
                "singularName": "",
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["get", "list"],
            }

        return JSONResponse(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": GROUP_VERSION,
                "resources": [
                    resource("nodes", "NodeMetrics", False),
                    resource("pods", "PodMetrics", True),
                ],
            }
        )

    async def nodes(self, request: Request) -> Response:
        name = request.path_params.get("name")
        if name is not None and name != self.node_name:
            return _status(404, "NotFound", f'nodemetrics.metrics.k8s.io "{name}" not found')
        try:
            matches = label_matcher(request.query_params.get("labelSelector", ""))
        except SelectorError as exc:
            return _status(400, "BadRequest", str(exc))
        item = node_metrics(await self.usage(), node_name=self.node_name, labels={}, now=self.now())
        if name is not None:
            return JSONResponse(item)
        items = [item] if matches({}) else []
        return JSONResponse(
            {"kind": "NodeMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}
        )

    async def pod_list(self, request: Request) -> Response:
        namespace = request.path_params.get("namespace")
        try:
            matches = label_matcher(request.query_params.get("labelSelector", ""))
        except SelectorError as exc:
            return _status(400, "BadRequest", str(exc))
        pods = [
            p
            for p in self.store
            if (namespace is None or p.metadata.namespace == namespace)
            and matches(p.metadata.labels)
        ]
        items = [pod_metrics(pu) for pu in await self.usage(pods)]
        items.sort(key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"]))  # type: ignore[index]
        return JSONResponse(
            {"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}
        )

    async def pod_get(self, request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        pod = self.store.by_name(namespace, name)
        usages = await self.usage([pod]) if pod is not None else []
        if not usages:
            return _status(
                404, "NotFound", f'podmetrics.metrics.k8s.io "{namespace}/{name}" not found'
            )
        return JSONResponse(pod_metrics(usages[0]))


# --- registration -------------------------------------------------------------------------------


def _service(address: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE, "labels": MANAGED_BY},
        "spec": {
            "type": "ExternalName",
            "externalName": address,
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    }


def _apiservice(port: int, ca_bundle: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE, "labels": MANAGED_BY},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"namespace": SERVICE_NAMESPACE, "name": SERVICE_NAME, "port": port},
            "caBundle": base64.b64encode(ca_bundle).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }


class _Meta(msgspec.Struct):
    labels: dict[str, str] = {}


class _Object(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


async def register_metrics_api(
    kube: KubeClient, *, address: str, port: int, ca_bundle_file: str
) -> bool:
    """Register this kubelet as the cluster's ``metrics.k8s.io`` API; False (and a log line)
    when another server already provides it."""
    path = f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}"
    try:
        existing = await kube.get(path, _Object)
    except NotFound:
        existing = None
    if existing is not None and existing.metadata.labels != MANAGED_BY:
        log.info("the metrics.k8s.io API is provided by another server: not registering")
        return False
    ca = await trio.Path(ca_bundle_file).read_bytes()
    svc_path = f"/api/v1/namespaces/{SERVICE_NAMESPACE}/services"
    try:
        await kube.merge_patch(f"{svc_path}/{SERVICE_NAME}", _service(address, port))
    except NotFound:
        await kube.create(svc_path, _service(address, port))
    if existing is None:
        try:
            await kube.create("/apis/apiregistration.k8s.io/v1/apiservices", _apiservice(port, ca))
        except ApiError as exc:
            if exc.status != 409:
                raise
    else:
        await kube.merge_patch(path, _apiservice(port, ca))
    return True
