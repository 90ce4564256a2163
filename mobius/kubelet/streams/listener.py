"""One TLS port for the whole kubelet API: streaming upgrades here, everything else to hypercorn.

ASGI cannot hand a connection over for a non-WebSocket upgrade (``Upgrade: SPDY/3.1``), so
hypercorn alone cannot serve exec. Instead we accept TLS ourselves (the context comes from the
same hypercorn ``Config``, so certificates and client-certificate policy stay in one place),
read the first request head (bounded in size and time) and parse it with ``h11``:

* ``/exec``, ``/attach``, ``/portForward`` upgraded to SPDY/3.1 or to a WebSocket go to the
  route's handler with the connection (bytes already read are replayed);
* anything else, and every HTTP/2 connection (ALPN ``h2``; upgrades are HTTP/1.1 only), goes to
  the fallback, hypercorn's per-connection server, with the bytes read so far replayed.

:func:`serve_connection` does this for one accepted connection, for the kubelet server's own
accept loop. :func:`serve_https` is a complete server around it (the integration tests use it);
it needs hypercorn's per-connection ``TCPServer``, ``Lifespan`` and ``WorkerContext``, which
hypercorn does not re-export, so their use is confined to :func:`_hypercorn` (hypercorn 0.17
and 0.18 have the same signatures).

A keep-alive connection belongs to whoever got its first request; the API server opens a fresh
connection for each upgrade.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import h11
import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app

log = logging.getLogger(__name__)

__all__ = [
    "PrefixedStream",
    "RequestHead",
    "Route",
    "StreamHandler",
    "respond",
    "serve_connection",
    "serve_https",
]

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0


class RequestHead(msgspec.Struct, frozen=True, kw_only=True):
    """The first request of a connection, as far as routing needs it."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: tuple[tuple[str, str], ...]  # names lower case
    raw: bytes  # the head as received, for wsproto to parse again

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    def tokens(self, name: str) -> list[str]:
        """Every comma-separated value of every ``name`` header, stripped."""
        return [t.strip() for k, v in self.headers if k == name for t in v.split(",") if t.strip()]

    @property
    def upgrade(self) -> str:
        return self.header("upgrade").lower()


StreamHandler = Callable[[RequestHead, "PrefixedStream"], Awaitable[None]]
Route = Callable[[RequestHead], StreamHandler | None]


class PrefixedStream(trio.abc.HalfCloseableStream):
    """A TLS stream whose first bytes were already read: they are handed out again first.

    Other attributes (``getpeercert``, ``selected_alpn_protocol``, ``transport_stream``,
    ``do_handshake``) are the TLS stream's, which is what hypercorn looks for.
    """

    def __init__(self, stream: trio.SSLStream[Any], prefix: bytes = b""):
        self.stream = stream
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"<PrefixedStream {len(self.prefix)} bytes replayed>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.prefix:
            n = len(self.prefix) if max_bytes is None else max_bytes
            data, self.prefix = self.prefix[:n], self.prefix[n:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self.stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()  # TLS has no half-close

    async def aclose(self) -> None:
        await self.stream.aclose()


async def respond(
    stream: trio.abc.SendStream,
    status: int,
    body: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    """A complete plain-text HTTP/1.1 response that closes the connection."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")  # h11 answers only after a request
    conn.next_event()
    data = body.encode()
    all_headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(data))),
        ("connection", "close"),
        *headers,
    ]
    out = conn.send(h11.Response(status_code=status, headers=all_headers)) or b""
    out += (conn.send(h11.Data(data=data)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
    await stream.send_all(out)


def parse_head(raw: bytes) -> RequestHead:
    """Parse the request head ``raw`` (ending with the blank line); ValueError if it is not one."""
    conn = h11.Connection(h11.SERVER)
    try:
        conn.receive_data(raw)
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(event, h11.Request):
        raise ValueError("not an HTTP/1.1 request")
    target = event.target.decode("latin-1")
    parts = urlsplit(target)
    return RequestHead(
        method=event.method.decode("latin-1"),
        target=target,
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers),
        raw=raw,
    )


async def _read_head(stream: trio.SSLStream[Any]) -> tuple[bytes, bytes] | None:
    """(head, bytes after it), or None when the bytes seen are not an HTTP/1.1 head."""
    buffer = b""
    with trio.move_on_after(HEAD_TIMEOUT):
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                return None
            data = await stream.receive_some(65536)
            if not data:
                return None
            buffer += bytes(data)
        return buffer[: end + 4], buffer[end + 4 :]
    return None


async def serve_connection(
    stream: trio.SSLStream[Any],
    *,
    route: Route,
    fallback: Callable[[PrefixedStream], Awaitable[None]],
) -> None:
    """Serve one accepted TLS connection: a streaming upgrade that ``route`` claims, or
    ``fallback`` (hypercorn) with the bytes read so far replayed."""
    try:
        with trio.fail_after(HEAD_TIMEOUT):
            await stream.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError):
        await trio.aclose_forcefully(stream)
        return
    if stream.selected_alpn_protocol() == "h2":
        await fallback(PrefixedStream(stream))
        return
    try:
        found = await _read_head(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        found = None
    if found is None:
        await trio.aclose_forcefully(stream)
        return
    raw, rest = found
    try:
        head = parse_head(raw)
    except ValueError:
        await fallback(PrefixedStream(stream, raw + rest))  # let hypercorn say what is wrong
        return
    handler = route(head) if head.upgrade else None
    if handler is None:
        await fallback(PrefixedStream(stream, raw + rest))
        return
    wrapped = PrefixedStream(stream, rest)
    try:
        await handler(head, wrapped)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("%s %s: connection lost: %s", head.method, head.path, exc)
    except Exception:  # one broken session must not stop the server
        log.exception("%s %s failed", head.method, head.path)
    finally:
        await trio.aclose_forcefully(stream)


def _bind(config: Config) -> tuple[str, int]:
    (bind,) = config.bind
    host, _, port = bind.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve_https(
    app: Any,
    config: Config,
    *,
    route: Route,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``app`` (ASGI) and the streaming ``route`` on ``config.bind``, TLS from ``config``.

    Reports the bound port when listening (``config.bind`` may say port 0).
    """
    context = config.create_ssl_context()
    if context is None:
        raise ValueError("the kubelet port needs TLS: set certfile and keyfile in the Config")
    host, port = _bind(config)
    listeners = await trio.open_ssl_over_tcp_listeners(
        port, context, host=host, https_compatible=True
    )
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    bound = int(transport.socket.getsockname()[1])
    async with trio.open_nursery() as nursery:
        hypercorn = await nursery.start(_hypercorn, app, config)
        handler = partial(serve_connection, route=route, fallback=hypercorn)
        await nursery.start(trio.serve_listeners, handler, listeners)
        log.info("kubelet API on https://%s:%d (exec, attach, port-forward included)", host, bound)
        task_status.started(bound)
    raise AssertionError("kubelet listener stopped")


async def _hypercorn(
    app: Any,
    config: Config,
    *,
    task_status: trio.TaskStatus[Callable[[PrefixedStream], Awaitable[None]]],
) -> None:
    """Run the ASGI lifespan; report a function that serves one accepted connection."""
    wrapped = wrap_app(app, config.wsgi_max_body_size, None)
    state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, state)
    context = WorkerContext(None)
    async with trio.open_nursery() as nursery:
        await nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async def serve_one(stream: PrefixedStream) -> None:
            await TCPServer(wrapped, config, context, dict(state), stream)  # type: ignore[arg-type]

        task_status.started(serve_one)
        await trio.sleep_forever()
