"""The streaming listener in-process on a free port, TLS from a throwaway CA, local backends.

``kubelet`` serves a Starlette app (``/healthz``) and the real :func:`stream_route` whose pod
lookup knows one pod, ``default/web``, whose exec commands run on this machine (no srun) and
whose port-forward dials 127.0.0.1. Clients: :func:`spdy_upgrade` and :func:`ws_upgrade`.
"""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import msgspec
import pytest
import trio
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.events import Request as WsRequest

from mobius.controlplane.pki import CertAndKey, issue_cert, new_ca
from mobius.kubelet.streams.backend import Command
from mobius.kubelet.streams.listener import PrefixedStream, serve_https
from mobius.kubelet.streams.remotecommand import ExecOptions
from mobius.kubelet.streams.websocket import WebSocket
from mobius.kubelet.streams.wiring import PodTarget, StreamRefused, exec_session, stream_route


class Verdict(msgspec.Struct, frozen=True):
    status: int
    message: str = ""


class Kubelet(msgspec.Struct):
    port: int
    client_context: ssl.SSLContext
    ca_file: Path
    cert_file: Path
    key_file: Path


def _write(pair: CertAndKey, folder: Path, stem: str) -> tuple[Path, Path]:
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    return cert, key


async def resolve(ns: str, name: str, uid: str, container: str | None) -> PodTarget:
    if (ns, name) not in (("default", "web"), ("default", "forbidden")):
        raise StreamRefused(404, f'pod "{name}" not found in namespace "{ns}" on this node')
    return PodTarget(
        namespace=ns, name=name, uid="u1", job_id="1", container=container or "", pod_dir=Path("/")
    )


def local_command(target: PodTarget, options: ExecOptions) -> Command:
    return Command(argv=options.command, tty=options.tty)


async def dial_local(target: PodTarget, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream("127.0.0.1", port)


@pytest.fixture
async def kubelet(tmp_path: Path, nursery: trio.Nursery) -> Kubelet:
    ca = new_ca()
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    server = issue_cert(
        ca, common_name="mobius", ip_addresses=["127.0.0.1"], server=True, client=False
    )
    client = issue_cert(ca, common_name="apiserver", server=False, client=True)
    cert, key = _write(server, tmp_path, "server")
    client_cert, client_key = _write(client, tmp_path, "client")
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile, config.keyfile, config.ca_certs = str(cert), str(key), str(ca_file)
    config.verify_mode = ssl.CERT_REQUIRED
    config.accesslog = None

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/healthz", healthz)])

    async def authorize(
        *, method: str, path: str, cert_der: bytes | None, authorization: str
    ) -> Verdict:
        if cert_der is None:
            return Verdict(401, "Unauthorized")
        return Verdict(403, "Forbidden") if "forbidden" in path else Verdict(200)

    route = stream_route(
        resolve=resolve,
        exec_session=exec_session(local_command),
        attach_session=exec_session(local_command),
        dial=dial_local,
        authorize=authorize,
    )
    port = await nursery.start(partial(serve_https, app, config, route=route))
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(client_cert), str(client_key))
    context.set_alpn_protocols(["http/1.1"])
    return Kubelet(port, context, ca_file, client_cert, client_key)


async def _connect(kubelet: Kubelet) -> trio.SSLStream[trio.SocketStream]:
    return await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", kubelet.port, ssl_context=kubelet.client_context, https_compatible=True
    )


async def spdy_upgrade(
    kubelet: Kubelet, target: str, protocols: tuple[str, ...] = ("v4.channel.k8s.io",)
) -> tuple[int, bytes, PrefixedStream]:
    """POST an SPDY upgrade: (status, response head and body so far, stream after the head)."""
    stream = await _connect(kubelet)
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: 127.0.0.1:{kubelet.port}",
        "Connection: Upgrade",
        "Upgrade: SPDY/3.1",
        *(f"X-Stream-Protocol-Version: {p}" for p in protocols),
        "Content-Length: 0",
    ]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some()
        if not data:
            break
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if status != 101:
        with trio.move_on_after(5):
            while data := await stream.receive_some():
                rest += data
        await trio.aclose_forcefully(stream)
        return status, head + b"\r\n\r\n" + rest, PrefixedStream(stream)
    return status, head, PrefixedStream(stream, rest)


async def ws_upgrade(kubelet: Kubelet, target: str, subprotocols: list[str]) -> WebSocket | bytes:
    """A client WebSocket, or the body of the refusal."""
    stream = await _connect(kubelet)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(
        ws.send(WsRequest(host="127.0.0.1", target=target, subprotocols=subprotocols))
    )
    body = b""
    while data := await stream.receive_some():
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return WebSocket(stream, ws, event.subprotocol or "")
            if isinstance(event, RejectData):
                body += event.data
            if isinstance(event, RejectData | RejectConnection) and (
                getattr(event, "body_finished", False) or not getattr(event, "has_body", True)
            ):
                await trio.aclose_forcefully(stream)
                return body
    await trio.aclose_forcefully(stream)
    return body
