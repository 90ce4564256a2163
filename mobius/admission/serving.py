"""Serve the admission webhooks over HTTPS and register them with the API server.

The webhook server is a task of the kubelet process (hypercorn on trio, a Starlette app). Once
its port is bound it registers a MutatingWebhookConfiguration whose caBundle is the cluster CA;
on shutdown it removes it again, because the configuration fails closed (a Service that slipped
through un-mutated would get a virtual IP nothing serves).
"""

from __future__ import annotations

import base64
import contextlib
import logging
from pathlib import Path
from typing import Any, NoReturn

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mobius.admission.services import review_response
from mobius.errors import ApiError, ApiUnreachable, NotFound
from mobius.kube.client import KubeClient

log = logging.getLogger(__name__)

CONFIGURATION = "mobius"
_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True):
    bind: str
    port: int
    address: str  # how the API server reaches this process
    cert_file: str
    key_file: str
    ca_bundle_file: str  # the CA that signed cert_file, for the API server to verify it


def build_app() -> Starlette:
    async def mutate_services(request: Request) -> Response:
        try:
            review = await request.json()
        except ValueError:
            return JSONResponse({"message": "body is not an AdmissionReview"}, status_code=400)
        return JSONResponse(review_response(review))

    return Starlette(routes=[Route("/mutate/services", mutate_services, methods=["POST"])])


def configuration(settings: WebhookSettings) -> dict[str, Any]:
    ca = base64.b64encode(Path(settings.ca_bundle_file).read_bytes()).decode()
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION},
        "webhooks": [
            {
                "name": "headless-services.mobius.io",
                "clientConfig": {
                    "url": f"https://{settings.address}:{settings.port}/mutate/services",
                    "caBundle": ca,
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["services"],
                        "scope": "Namespaced",
                    }
                ],
                # The API server's own "kubernetes" Service keeps its virtual IP.
                "matchConditions": [
                    {
                        "name": "not-the-apiserver-service",
                        "expression": "!(object.metadata.namespace == 'default' && "
                        "object.metadata.name == 'kubernetes')",
                    }
                ],
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }


async def register(kube: KubeClient, settings: WebhookSettings) -> None:
    body = await trio.to_thread.run_sync(configuration, settings)
    try:
        await kube.merge_patch(f"{_PATH}/{CONFIGURATION}", {"webhooks": body["webhooks"]})
    except NotFound:
        await kube.create(_PATH, body)


async def serve_admission(
    kube: KubeClient,
    settings: WebhookSettings,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    config = Config()
    config.bind = [f"{settings.bind}:{settings.port}"]
    config.certfile = settings.cert_file
    config.keyfile = settings.key_file
    config.accesslog = None
    config.errorlog = logging.getLogger("mobius.admission.hypercorn")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, build_app(), config)
            await register(kube, settings)
            log.info("admission webhooks registered at %s:%d", settings.address, settings.port)
            task_status.started()
    finally:
        with trio.move_on_after(5) as scope, contextlib.suppress(ApiError, ApiUnreachable):
            scope.shield = True
            await kube.delete(f"{_PATH}/{CONFIGURATION}")
    raise AssertionError("admission server stopped")
