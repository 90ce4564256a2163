"""The kubelet API over HTTPS: hypercorn's HTTP machinery on trio, a Starlette app behind
authentication and authorization as the real kubelet does them (:mod:`mobius.kubelet.auth`).

The serving certificate is signed by the cluster CA and names the node's address, so the API
server can verify it (``--kubelet-certificate-authority``). Client certificates are optional in
the handshake (bearer tokens are the other way in) but, when given, must be signed by the client
CA. hypercorn does not pass the peer certificate to the app, so this module runs the accept loop
itself and hands hypercorn's connection handler a per-connection app that adds the verified
certificate to the ASGI scope (``scope["extensions"]["tls"]["client_cert_der"]``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, NoReturn

import msgspec
import trio
from cryptography import x509
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mobius.errors import ConfigError
from mobius.kubelet.auth import (
    App,
    Authenticator,
    AuthMiddleware,
    FrontProxy,
    ReviewClient,
    authorize,
)
from mobius.kubelet.logs import ContainerLogs
from mobius.kubelet.resources import ResourceEndpoints
from mobius.kubelet.streams.wiring import pod_streams, serve_connection
from mobius.runtime.base import Runtime
from mobius.state import PodPaths, PodStore

log = logging.getLogger(__name__)


class ApiServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    bind: str
    port: int
    cert_file: str
    key_file: str
    client_ca_file: str
    node_name: str = "mobius"
    max_log_streams: int = 512
    # The API server's aggregation layer (``--requestheader-client-ca-file`` and
    # ``--requestheader-allowed-names``): set, this server also serves metrics.k8s.io.
    front_proxy_ca_file: str = ""
    front_proxy_names: tuple[str, ...] = ("front-proxy-client",)


def build_app(
    *,
    store: PodStore,
    paths: PodPaths,
    node_name: str = "mobius",
    max_log_streams: int = 512,
    metrics: Callable[[], bytes] | None = None,
) -> Starlette:
    """The routes, without authentication (tests call it directly). ``metrics``: Mobius's own
    Prometheus metrics in the text format, served at ``/metrics``."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def own_metrics(request: Request) -> Response:
        assert metrics is not None
        return Response(metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(
        routes=[
            Route(
                "/containerLogs/{namespace}/{pod}/{container}",
                ContainerLogs(store=store, paths=paths, max_streams=max_log_streams).handle,
            ),
            Route("/healthz", healthz),
            *([Route("/metrics", own_metrics)] if metrics is not None else []),
            *ResourceEndpoints(store=store, paths=paths, node_name=node_name).routes(),
        ]
    )


def ssl_context(settings: ApiServerSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.cert_file, settings.key_file)
    ctx.load_verify_locations(settings.client_ca_file)
    if settings.front_proxy_ca_file:
        ctx.load_verify_locations(settings.front_proxy_ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])  # streaming and (later) SPDY upgrades need HTTP/1.1
    return ctx


class _ConnectionApp:
    """hypercorn's app wrapper for one TLS connection: puts the client certificate in the scope."""

    def __init__(self, app: App, stream: trio.SSLStream[trio.SocketStream]):
        self.app = app
        self.stream = stream

    def __repr__(self) -> str:
        return f"<_ConnectionApp {self.app!r}>"

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
        sync_spawn: Any,
        call_soon: Any,
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            der = self.stream.getpeercert(binary_form=True)
            if der:
                scope.setdefault("extensions", {})["tls"] = {"client_cert_der": der}
        await self.app(scope, receive, send)


async def serve_kubelet_api(
    settings: ApiServerSettings,
    *,
    store: PodStore,
    paths: PodPaths,
    kube: ReviewClient,
    runtime: Runtime,
    slurm_env: Mapping[str, str],
    metrics: Callable[[], bytes] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    for f in (settings.cert_file, settings.key_file, settings.client_ca_file):
        if not await trio.Path(f).exists():
            raise ConfigError(
                f"kubelet API: {f} does not exist (set the serving cert, key and client CA)"
            )
    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("mobius.kubelet.hypercorn")
    config.loglevel = "WARNING"
    front_proxy = None
    if settings.front_proxy_ca_file:
        ca = x509.load_pem_x509_certificate(
            await trio.Path(settings.front_proxy_ca_file).read_bytes()
        )
        front_proxy = FrontProxy(ca=ca, names=frozenset(settings.front_proxy_names))
    auth = Authenticator(kube, node_name=settings.node_name, front_proxy=front_proxy)
    app = AuthMiddleware(
        build_app(
            store=store,
            paths=paths,
            node_name=settings.node_name,
            max_log_streams=settings.max_log_streams,
            metrics=metrics,
        ),
        auth=auth,
    )
    # exec, attach and port-forward upgrade the connection (SPDY/3.1 or WebSocket): they are
    # served by mobius.kubelet.streams; every other connection goes to hypercorn.
    route = pod_streams(
        store=store,
        paths=paths,
        runtime=runtime,
        slurm_env=slurm_env,
        authorize=partial(authorize, auth),
    )
    ctx = ssl_context(settings)
    listeners = [
        trio.SSLListener(listener, ctx, https_compatible=True)
        for listener in await trio.open_tcp_listeners(settings.port, host=settings.bind)
    ]
    context = WorkerContext(None)

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        async def fallback(replayed: Any) -> None:
            await TCPServer(
                _ConnectionApp(app, stream),  # type: ignore[arg-type]
                config,
                context,
                ConnectionState({}),
                replayed,
            )

        try:
            await serve_connection(stream, route=route, fallback=fallback)
        except Exception:  # one broken connection must not stop the server
            log.exception("kubelet API: connection failed")

    async with trio.open_nursery() as nursery:
        task_status.started()
        await trio.serve_listeners(handle, listeners, handler_nursery=nursery)
    raise AssertionError("kubelet API server stopped")
