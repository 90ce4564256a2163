"""WebSocket connections for the streaming endpoints, with ``wsproto`` doing the framing.

When the API server forwards a WebSocket (``ExtendWebSocketsToKubelet`` and a node that
declares it), exec and attach speak ``v5.channel.k8s.io`` (or ``v4``): binary messages whose
first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds 255, "the
peer closed channel N"). Port-forward tunnels SPDY inside binary messages
(``SPDY/3.1+portforward.k8s.io``); :class:`MessageStream` turns such a connection back into a
byte stream for :func:`mobius.kubelet.streams.session.serve_spdy`.

:class:`WebSocket` needs no task of its own: whoever reads (:meth:`WebSocket.receive`) also
answers pings and the peer's close; sends share one lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from mobius.errors import MobiusError

__all__ = ["MessageStream", "WebSocket", "WebSocketRefused", "accept_websocket"]

MAX_MESSAGE = 16 * 1024 * 1024


class WebSocketRefused(MobiusError):
    """The upgrade request could not be accepted (no common subprotocol, bad handshake)."""


class WebSocket:
    """A server-side WebSocket over an already upgraded trio stream."""

    def __init__(self, transport: trio.abc.Stream, ws: WSConnection, subprotocol: str):
        self.transport = transport
        self.subprotocol = subprotocol
        self._ws = ws
        self._lock = trio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<WebSocket {self.subprotocol} closed={self._closed}>"

    async def _write(self, event: BytesMessage | Pong | CloseConnection) -> None:
        async with self._lock:
            data = self._ws.send(event)
            await self.transport.send_all(data)

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the WebSocket is closed")
        await self._write(BytesMessage(data=data))

    async def receive(self) -> bytes | None:
        """The next whole binary message, or None when the peer closed or went away."""
        parts: list[bytes] = []
        size = 0
        while True:
            for event in self._ws.events():
                if isinstance(event, BytesMessage):
                    parts.append(bytes(event.data))
                    size += len(event.data)
                    if size > MAX_MESSAGE:
                        await self.close(1009)
                        return None
                    if event.message_finished:
                        return b"".join(parts)
                elif isinstance(event, Ping):
                    await self._write(event.response())
                elif isinstance(event, CloseConnection):
                    if not self._closed:
                        self._closed = True
                        with contextlib.suppress(LocalProtocolError, trio.BrokenResourceError):
                            await self._write(event.response())
                    return None
                # Text messages belong to the base64 protocols, which we do not offer.
            if self._closed and self._ws.state.name == "CLOSED":
                return None
            try:
                data = await self.transport.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            try:
                self._ws.receive_data(bytes(data))
            except RemoteProtocolError:
                return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (once); the caller then reads until the peer answers, or not."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        with contextlib.suppress(
            LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            await self._write(CloseConnection(code=code, reason=reason or None))

    async def finish(self, *, linger: float = 2.0) -> None:
        """Close, wait up to ``linger`` seconds for the peer's close, then drop the transport."""
        await self.close()
        with trio.move_on_after(linger):
            while await self.receive() is not None:
                pass
        await trio.aclose_forcefully(self.transport)


class MessageStream(trio.abc.Stream):
    """A byte stream carried in binary WebSocket messages (the port-forward SPDY tunnel)."""

    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self._pending = b""

    def __repr__(self) -> str:
        return f"<MessageStream {self.websocket!r}>"

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._pending:
            message = await self.websocket.receive()
            if message is None:
                return b""
            self._pending = message
        if max_bytes is None:
            max_bytes = len(self._pending)
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.websocket.send(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        try:
            await self.websocket.close()
        finally:
            await trio.aclose_forcefully(self.websocket.transport)


async def accept_websocket(
    transport: trio.abc.Stream, head: bytes, subprotocols: Sequence[str]
) -> WebSocket:
    """Answer the upgrade request in ``head`` (already read from ``transport``) with the first
    of the client's subprotocols that we speak; WebSocketRefused (after answering 400) if none.
    """
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(head)
    request = None
    while request is None:
        for event in ws.events():
            if isinstance(event, Request):
                request = event
                break
        else:
            data = await transport.receive_some(65536)
            if not data:
                raise WebSocketRefused("the client hung up during the WebSocket handshake")
            ws.receive_data(bytes(data))
    chosen = next((p for p in request.subprotocols if p in subprotocols), None)
    if chosen is None:
        body = (
            f"unable to upgrade: none of the subprotocols {request.subprotocols} is supported; "
            f"this kubelet speaks {list(subprotocols)}\n"
        ).encode()
        reject = RejectConnection(
            status_code=400,
            headers=[(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
            has_body=True,
        )
        await transport.send_all(ws.send(reject) + ws.send(RejectData(data=body)))
        raise WebSocketRefused(f"no common subprotocol in {request.subprotocols}")
    await transport.send_all(ws.send(AcceptConnection(subprotocol=chosen)))
    return WebSocket(transport, ws, chosen)
