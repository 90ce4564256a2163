"""Port-forward (``portforward.k8s.io``): SPDY streams spliced to TCP connections to the pod.

For every local connection kubectl opens two streams with headers ``streamType`` (``error``,
then ``data``), ``port`` and ``requestID``. Once both are there we connect to the pod's IP and
port from the kubelet host (podman's bridge addresses, or the node's own address for host
network and Apptainer pods, are reachable from it) and copy both ways; a half-close on one side
becomes a half-close on the other. Failure to connect is written to the error stream, which
kubectl prints. Without ``requestID`` (old clients) the pair is matched as the kubelet does:
the data stream's id is the error stream's id plus two.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import trio

from mobius.kubelet.streams.session import SpdySession, SpdyStream

log = logging.getLogger(__name__)

SPDY_PROTOCOLS = ("portforward.k8s.io",)
WEBSOCKET_PROTOCOLS = ("SPDY/3.1+portforward.k8s.io",)
CONNECT_TIMEOUT = 10.0

Dialer = Callable[[int], Awaitable[trio.abc.Stream]]


def _request_id(stream: SpdyStream, kind: str) -> str:
    rid = stream.header("requestID")
    if rid:
        return rid
    return str(stream.id if kind == "error" else stream.id - 2)


async def _splice(source: trio.abc.ReceiveStream, sink: trio.abc.Stream | SpdyStream) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    if isinstance(sink, trio.abc.HalfCloseableStream):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await sink.send_eof()


async def _forward(data: SpdyStream, error: SpdyStream, dial: Dialer, pod: str) -> None:
    port_text = data.header("port")
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(port_text)
        with trio.fail_after(CONNECT_TIMEOUT):
            connection = await dial(port)
    except (OSError, ValueError, trio.TooSlowError) as exc:
        message = f"error forwarding port {port_text} to pod {pod}: {exc or 'timed out'}"
        log.info("%s", message)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await error.send_all(message.encode())
        await error.aclose()
        await data.aclose()
        return
    async with connection, trio.open_nursery() as nursery:
        nursery.start_soon(_splice, data, connection)
        nursery.start_soon(_splice, connection, data)
    await error.aclose()


async def serve_port_forward(session: SpdySession, dial: Dialer, *, pod: str) -> None:
    """Forward every stream pair the client opens until it hangs up."""
    pending: dict[str, dict[str, SpdyStream]] = {}
    async with trio.open_nursery() as nursery:
        while (stream := await session.accept()) is not None:
            kind = stream.header("streamType")
            if kind not in ("data", "error"):
                await stream.reset()
                continue
            rid = _request_id(stream, kind)
            pair = pending.setdefault(rid, {})
            if kind in pair:
                await stream.reset()
                continue
            pair[kind] = stream
            if len(pair) == 2:
                del pending[rid]
                nursery.start_soon(_forward, pair["data"], pair["error"], dial, pod)
        nursery.cancel_scope.cancel()  # the client is gone: so are its connections
