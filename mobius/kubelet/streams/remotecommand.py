"""The Kubernetes remotecommand protocol (exec and attach) over SPDY or WebSocket.

Channels (``v4.channel.k8s.io``/``v5.channel.k8s.io``): stdin, stdout, stderr, error, resize.
Under SPDY each is a stream the client opens with a ``streamType`` header; under WebSocket each
is a channel number prefixed to every binary message. Which ones exist follows the request's
query (``input``, ``output``, ``error``, ``tty``): no stderr with a tty (the terminal merges
it), a resize channel only with one. The error channel carries one ``metav1.Status`` as JSON
when the command has ended: Success, or Failure with reason ``NonZeroExitCode`` and an
``ExitCode`` cause, from which kubectl prints ``command terminated with exit code N`` and exits
with N. Resize messages are ``{"Width": w, "Height": h}``, back to back.

The command itself is a :data:`Runner`: it gets an :class:`ExecIO` of plain trio streams and
returns the exit code, so the protocol code knows nothing of srun or podman and the tests can
run a local shell.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import msgspec
import trio

from mobius.errors import MobiusError
from mobius.kubelet.streams.session import SpdySession, SpdyStream
from mobius.kubelet.streams.websocket import WebSocket

log = logging.getLogger(__name__)

#: What we answer to ``X-Stream-Protocol-Version`` / ``Sec-WebSocket-Protocol``, best first.
#: Over SPDY, v5 and v4 behave the same (SPDY has its own half-close); v1-v3 are not offered.
SPDY_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
WEBSOCKET_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's default

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
_CHANNEL_OF = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}

SUCCESS = b'{"metadata":{},"status":"Success"}'


class ExecFailed(MobiusError):
    """The command could not be run at all; the message goes to the user as the Status."""


class ExecOptions(msgspec.Struct, frozen=True, kw_only=True):
    command: tuple[str, ...] = ()
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> ExecOptions:
        def flag(name: str) -> bool:
            return (query.get(name) or [""])[0].lower() in ("1", "true")

        return cls(
            command=tuple(query.get("command", ())),
            stdin=flag("input"),
            stdout=flag("output"),
            stderr=flag("error"),
            tty=flag("tty"),
        )

    def channels(self) -> set[str]:
        """The stream types the client opens for these options."""
        wanted = {"error"}
        wanted |= {"stdin"} if self.stdin else set()
        wanted |= {"stdout"} if self.stdout else set()
        wanted |= {"stderr"} if self.stderr and not self.tty else set()
        wanted |= {"resize"} if self.tty else set()
        return wanted


class TerminalSize(msgspec.Struct, frozen=True, rename="pascal"):
    width: int
    height: int


class ExecIO(msgspec.Struct, kw_only=True):
    """The command's side of a session; absent channels are None."""

    stdin: trio.abc.ReceiveStream | None = None
    stdout: trio.abc.SendStream | None = None
    stderr: trio.abc.SendStream | None = None
    resize: trio.abc.ReceiveStream | None = None
    tty: bool = False


Runner = Callable[[ExecIO], Awaitable[int]]


def exit_status(code: int) -> bytes:
    """The error channel's Status for an exit code, as the kubelet writes it."""
    if code == 0:
        return SUCCESS
    return msgspec.json.encode(
        {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    )


def failure_status(message: str) -> bytes:
    return msgspec.json.encode(
        {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}
    )


async def terminal_sizes(stream: trio.abc.ReceiveStream) -> AsyncIterator[TerminalSize]:
    """Decode the resize channel: JSON objects back to back (with or without newlines)."""
    decoder = json.JSONDecoder()
    buffer = ""
    while data := await stream.receive_some(4096):
        buffer += data.decode(errors="replace")
        while buffer := buffer.lstrip():
            try:
                obj, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                if len(buffer) > 4096:
                    buffer = ""  # garbage, not a partial object
                break
            buffer = buffer[end:]
            try:
                yield msgspec.convert(obj, TerminalSize)
            except msgspec.ValidationError:
                log.debug("ignoring resize message %r", obj)


async def _run(runner: Runner, io: ExecIO) -> bytes:
    try:
        return exit_status(await runner(io))
    except ExecFailed as exc:
        return failure_status(str(exc))


async def _until_gone(closed: trio.Event, run: Callable[[], Awaitable[bytes]]) -> bytes | None:
    """Run ``run``; None if the peer went away first (the command is then cancelled)."""
    result: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def work() -> None:
            result.append(await run())
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            await closed.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(work)
        nursery.start_soon(watch)
    return result[0] if result else None


# -- SPDY ---------------------------------------------------------------------------------


async def serve_exec_spdy(session: SpdySession, options: ExecOptions, runner: Runner) -> None:
    """Gather the client's streams, run the command, report its status, close the streams."""
    wanted = options.channels()
    streams: dict[str, SpdyStream] = {}
    with trio.move_on_after(STREAM_CREATION_TIMEOUT):
        while wanted - streams.keys():
            stream = await session.accept()
            if stream is None:
                return
            kind = stream.header("streamType")
            if kind in wanted and kind not in streams:
                streams[kind] = stream
            else:
                await stream.reset()
    if wanted - streams.keys():
        log.info("exec: client opened %s of %s in time; giving up", sorted(streams), wanted)
        if "error" in streams:
            missing = sorted(wanted - streams.keys())
            await streams["error"].send_all(failure_status(f"timed out waiting for {missing}"))
        return
    io = ExecIO(
        stdin=streams.get("stdin"),
        stdout=streams.get("stdout"),
        stderr=streams.get("stderr"),
        resize=streams.get("resize"),
        tty=options.tty,
    )
    status = await _until_gone(session.closed, lambda: _run(runner, io))
    if status is None:
        return
    try:
        for kind in ("stdout", "stderr"):
            if kind in streams:
                await streams[kind].send_eof()
        await streams["error"].send_all(status)
        await streams["error"].send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


# -- WebSocket ----------------------------------------------------------------------------


class _Inbox(trio.abc.ReceiveStream):
    """An input channel of a WebSocket session, fed by the demultiplexer."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.send, self._receive = trio.open_memory_channel[bytes](64)
        self._pending = b""

    def __repr__(self) -> str:
        return f"<_Inbox {self.name}>"

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._pending:
            try:
                self._pending = await self._receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return b""
        n = len(self._pending) if max_bytes is None else max_bytes
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    async def aclose(self) -> None:
        self._receive.close()
        await trio.lowlevel.checkpoint()


class _Outbox(trio.abc.SendStream):
    """An output channel: each write is one binary message prefixed with the channel number."""

    def __init__(self, websocket: WebSocket, channel: int, *, v5: bool):
        self.websocket = websocket
        self.channel = channel
        self.v5 = v5
        self._eof = False

    def __repr__(self) -> str:
        return f"<_Outbox {self.channel}>"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for at in range(0, len(view), 32 * 1024):
            await self.websocket.send(bytes([self.channel]) + bytes(view[at : at + 32 * 1024]))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if self.v5 and not self._eof:
            self._eof = True
            await self.websocket.send(bytes([CLOSE, self.channel]))

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def serve_exec_websocket(websocket: WebSocket, options: ExecOptions, runner: Runner) -> None:
    v5 = websocket.subprotocol.startswith("v5.")
    wanted = options.channels()
    inboxes = {_CHANNEL_OF[k]: _Inbox(k) for k in ("stdin", "resize") if k in wanted}
    gone = trio.Event()

    async def demultiplex() -> None:
        try:
            while (message := await websocket.receive()) is not None:
                if not message:
                    continue
                channel, payload = message[0], message[1:]
                if channel == CLOSE and v5 and payload:
                    if (inbox := inboxes.get(payload[0])) is not None:
                        inbox.send.close()
                elif (inbox := inboxes.get(channel)) is not None and payload:
                    with contextlib.suppress(trio.ClosedResourceError):
                        await inbox.send.send(payload)
        finally:
            for inbox in inboxes.values():
                inbox.send.close()
            gone.set()

    io = ExecIO(
        stdin=inboxes.get(STDIN),
        stdout=_Outbox(websocket, STDOUT, v5=v5) if "stdout" in wanted else None,
        stderr=_Outbox(websocket, STDERR, v5=v5) if "stderr" in wanted else None,
        resize=inboxes.get(RESIZE),
        tty=options.tty,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(demultiplex)
        status = await _until_gone(gone, lambda: _run(runner, io))
        if status is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await websocket.send(bytes([ERROR]) + status)
        nursery.cancel_scope.cancel()
    await websocket.finish()
