"""A SPDY/3.1 session on a trio stream: the multiplexing under exec, attach and port-forward.

After the HTTP upgrade the API server (through ``moby/spdystream``) opens one SPDY stream per
channel (stdin, stdout, ... or a data/error pair per forwarded connection). Each stream is a
:class:`trio.abc.HalfCloseableStream`, so the protocol code copies bytes with ordinary
``receive_some``/``send_all`` and half-closes with ``send_eof`` (a FIN), as the Go side does.

:func:`serve_spdy` runs the frame reader beside a handler and ends the session (GOAWAY, close)
when the handler returns. Peer-opened streams are answered with an empty SYN_REPLY at once, as
the Go kubelet does; the handler takes them from :meth:`SpdySession.accept`. Each stream buffers
a bounded number of data frames; when a consumer falls behind, the reader waits, which stops
reading the connection (TCP back-pressure; spdystream does no window accounting either).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from mobius.kubelet.streams import spdy

log = logging.getLogger(__name__)

CHUNK = 32 * 1024
_BUFFERED_FRAMES = 64
T = TypeVar("T")


class SpdyStream(trio.abc.HalfCloseableStream):
    """One SPDY stream: bytes from the peer's data frames in, data frames out."""

    def __init__(self, session: SpdySession, stream_id: int, headers: spdy.HeaderBlock):
        self.id = stream_id
        self.headers = headers
        self._session = session
        self._in_send, self._in_recv = trio.open_memory_channel[bytes](_BUFFERED_FRAMES)
        self._pending = b""
        self.replied = trio.Event()
        self.reset_by_peer = False
        self._fin_sent = False

    def __repr__(self) -> str:
        return f"<SpdyStream {self.id} {self.headers}>"

    def header(self, name: str) -> str:
        return spdy.header(self.headers, name)

    # -- receiving -------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._pending:
            try:
                self._pending = await self._in_recv.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return b""
        if max_bytes is None or max_bytes >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    # -- sending ---------------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._fin_sent or self.reset_by_peer:
            raise trio.ClosedResourceError(f"SPDY stream {self.id} is closed for sending")
        view = memoryview(data)
        for at in range(0, len(view), CHUNK):
            await self._session.send(spdy.DataFrame(self.id, bytes(view[at : at + CHUNK])))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if self._fin_sent or self.reset_by_peer:
            await trio.lowlevel.checkpoint()
            return
        self._fin_sent = True
        await self._session.send(spdy.DataFrame(self.id, b"", fin=True))

    async def aclose(self) -> None:
        """Half-close our side (FIN); the peer closes its side when it is done."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.send_eof()

    async def reset(self, status: int = spdy.CANCEL) -> None:
        self._fin_sent = True
        self._in_send.close()
        await self._session.send(spdy.RstStream(self.id, status))


class SpdySession:
    """Both halves of one SPDY connection. Server role unless ``client=True`` (tests)."""

    def __init__(self, transport: trio.abc.Stream, *, client: bool = False):
        self.transport = transport
        self._codec = spdy.Codec()
        self._send_lock = trio.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._next_id = 1 if client else 2
        self._client = client
        self._new_send, self._new_recv = trio.open_memory_channel[SpdyStream](_BUFFERED_FRAMES)
        self.closed = trio.Event()

    def __repr__(self) -> str:
        role = "client" if self._client else "server"
        return f"<SpdySession {role} {len(self._streams)} streams>"

    async def send(self, frame: spdy.Frame) -> None:
        async with self._send_lock:  # header blocks must be compressed in the order sent
            await self.transport.send_all(self._codec.encode(frame))

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened, or None once the peer is gone."""
        try:
            return await self._new_recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def open_stream(self, headers: spdy.HeaderBlock, *, fin: bool = False) -> SpdyStream:
        """Open a stream and wait for the peer's SYN_REPLY (the client side, used in tests)."""
        stream = SpdyStream(self, self._next_id, headers)
        self._next_id += 2
        self._streams[stream.id] = stream
        await self.send(spdy.SynStream(stream.id, headers, fin=fin))
        if fin:
            stream._fin_sent = True
        await stream.replied.wait()
        return stream

    async def read_frames(self) -> None:
        """Read and dispatch frames until the peer closes or goes away."""
        try:
            while True:
                try:
                    data = await self.transport.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                for frame in self._codec.feed(data):
                    if not await self._dispatch(frame):
                        return
        finally:
            self._new_send.close()
            for stream in self._streams.values():
                stream._in_send.close()
            self.closed.set()

    async def _dispatch(self, frame: spdy.Frame) -> bool:
        if isinstance(frame, spdy.DataFrame):
            stream = self._streams.get(frame.stream_id)
            if stream is None:
                await self.send(spdy.RstStream(frame.stream_id, spdy.INVALID_STREAM))
                return True
            if frame.data:
                try:
                    await stream._in_send.send(frame.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # we reset it: drop what was in flight
                else:
                    await self.send(spdy.WindowUpdate(frame.stream_id, len(frame.data)))
            if frame.fin:
                stream._in_send.close()
        elif isinstance(frame, spdy.SynStream):
            if frame.stream_id in self._streams or frame.stream_id % 2 != (not self._client):
                await self.send(spdy.RstStream(frame.stream_id, spdy.PROTOCOL_ERROR))
                return True
            stream = SpdyStream(self, frame.stream_id, frame.headers)
            self._streams[stream.id] = stream
            await self.send(spdy.SynReply(stream.id, {}))
            if frame.fin or frame.unidirectional:
                stream._in_send.close()
            try:
                await self._new_send.send(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.reset(spdy.REFUSED_STREAM)
        elif isinstance(frame, spdy.SynReply):
            if (stream := self._streams.get(frame.stream_id)) is not None:
                stream.replied.set()
                if frame.fin:
                    stream._in_send.close()
        elif isinstance(frame, spdy.RstStream):
            if (stream := self._streams.get(frame.stream_id)) is not None:
                stream.reset_by_peer = True
                stream._in_send.close()
                stream.replied.set()
        elif isinstance(frame, spdy.Ping):
            if frame.id % 2 != (1 if self._client else 0):  # the peer's ping: echo it
                await self.send(frame)
        elif isinstance(frame, spdy.GoAway):
            return False
        # SETTINGS, HEADERS and WINDOW_UPDATE change nothing for us (see spdy module docstring).
        return True

    async def go_away(self, *, linger: float = 2.0) -> None:
        """Tell the peer we are done, give it ``linger`` seconds to hang up, close the transport.

        Closing while the peer's last frames sit unread would make the kernel answer with a
        reset, which can destroy output the peer has not read yet.
        """
        try:
            with trio.move_on_after(linger):
                await self.send(spdy.GoAway(max(self._streams, default=0)))
                await self.closed.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(self.transport)


async def serve_spdy(
    transport: trio.abc.Stream,
    handler: Callable[[SpdySession], Awaitable[T]],
    *,
    client: bool = False,
) -> T:
    """Run ``handler`` on a SPDY session over ``transport``; the session ends when it returns."""
    session = SpdySession(transport, client=client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.read_frames)
        try:
            result = await handler(session)
        finally:
            with trio.CancelScope(shield=True):
                await session.go_away()
            nursery.cancel_scope.cancel()
    return result
