"""The kubelet API over HTTPS, served by hypercorn on trio with a Starlette app.

The API server reaches it with its kubelet client certificate (``--kubelet-client-certificate``);
TLS requires a client certificate signed by the configured client CA, so nobody else gets in.
The serving certificate is signed by the cluster CA and names the node's address, so the API
server can verify it (``--kubelet-certificate-authority``).
"""

from __future__ import annotations

import logging
import ssl
from typing import NoReturn

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mobius.errors import ConfigError
from mobius.state import PodPaths, PodStore

log = logging.getLogger(__name__)


class ApiServerSettings(msgspec.Struct, frozen=True):
    bind: str
    port: int
    cert_file: str
    key_file: str
    client_ca_file: str


def _tail(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    if lines == 0:
        return b""
    body = data[:-1] if data.endswith(b"\n") else data
    idx = len(body)
    for _ in range(lines):
        idx = body.rfind(b"\n", 0, idx)
        if idx < 0:
            return data
    return data[idx + 1 :]


def build_app(*, store: PodStore, paths: PodPaths) -> Starlette:
    async def container_logs(request: Request) -> Response:
        ns, name, container = (request.path_params[k] for k in ("namespace", "pod", "container"))
        pod = store.by_name(ns, name)
        if pod is None:
            return PlainTextResponse(
                f'pod "{name}" not found in namespace "{ns}" on this node\n', 404
            )
        known = [c.name for c in (*pod.spec.init_containers, *pod.spec.containers)]
        if container not in known:
            return PlainTextResponse(
                f'container "{container}" is not valid for pod "{name}": choose one of {known}\n',
                400,
            )
        path = paths.log_file(pod.metadata.uid, container)
        try:
            data = await trio.Path(path).read_bytes()
        except FileNotFoundError:
            return PlainTextResponse(
                f'container "{container}" in pod "{name}" is waiting to start: no logs yet\n', 400
            )
        q = request.query_params
        try:
            tail = int(q.get("tailLines", "-1"))
            limit = int(q.get("limitBytes", "0"))
        except ValueError:
            return PlainTextResponse("tailLines and limitBytes must be integers\n", 400)
        data = _tail(data, tail)
        if limit > 0:
            data = data[:limit]
        return Response(data, media_type="text/plain")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/containerLogs/{namespace}/{pod}/{container}", container_logs),
            Route("/healthz", healthz),
        ]
    )


async def serve_kubelet_api(
    settings: ApiServerSettings,
    *,
    store: PodStore,
    paths: PodPaths,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    for f in (settings.cert_file, settings.key_file, settings.client_ca_file):
        if not await trio.Path(f).exists():
            raise ConfigError(
                f"kubelet API: {f} does not exist (set the serving cert, key and client CA)"
            )
    config = Config()
    config.bind = [f"{settings.bind}:{settings.port}"]
    config.certfile = settings.cert_file
    config.keyfile = settings.key_file
    config.ca_certs = settings.client_ca_file
    config.verify_mode = ssl.CERT_REQUIRED
    config.accesslog = None
    config.errorlog = logging.getLogger("mobius.kubelet.hypercorn")
    config.loglevel = "WARNING"
    app = build_app(store=store, paths=paths)
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
    raise AssertionError("kubelet API server stopped")
