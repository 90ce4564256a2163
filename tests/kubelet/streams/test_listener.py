"""The kubelet port end to end in-process: exec over SPDY and WebSocket, port-forward over SPDY
and the WebSocket tunnel, refusals, and plain requests falling through to the ASGI app."""

from __future__ import annotations

import json
from functools import partial
from urllib.parse import urlencode

import httpx
import trio

from mobius.kubelet.streams.session import SpdySession, serve_spdy
from mobius.kubelet.streams.websocket import MessageStream, WebSocket
from tests.kubelet.streams.conftest import Kubelet, spdy_upgrade, ws_upgrade


def _exec_target(*command: str, stdin: bool = False, tty: bool = False) -> str:
    query = [("command", c) for c in command] + [("output", "1")]
    query += [("input", "1")] if stdin else []
    query += [("tty", "1")] if tty else [("error", "1")]
    return "/exec/default/web/main?" + urlencode(query)


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = b""
    while data := await stream.receive_some():
        out += data
    return out


async def test_plain_requests_reach_the_asgi_app(kubelet: Kubelet) -> None:
    async with httpx.AsyncClient(
        verify=kubelet.client_context, base_url=f"https://127.0.0.1:{kubelet.port}"
    ) as client:
        response = await client.get("/healthz")
        assert (response.status_code, response.text) == (200, "ok")
        missing = await client.get("/nothing")
        assert missing.status_code == 404


async def test_exec_over_spdy_round_trips_stdin_and_reports_the_exit_code(kubelet: Kubelet) -> None:
    target = _exec_target("sh", "-c", "cat; echo oops >&2; exit 3", stdin=True)
    status, head, stream = await spdy_upgrade(kubelet, target)
    assert status == 101, head
    assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head

    async def client(session: SpdySession) -> tuple[bytes, bytes, bytes]:
        error = await session.open_stream({"streamtype": ["error"]})
        stdin = await session.open_stream({"streamtype": ["stdin"]})
        stdout = await session.open_stream({"streamtype": ["stdout"]})
        stderr = await session.open_stream({"streamtype": ["stderr"]})
        await stdin.send_all(b"hello\n" * 20000)  # more than one SPDY window
        await stdin.send_eof()
        async with trio.open_nursery() as nursery:
            out: dict[str, bytes] = {}

            async def read(name: str, s: trio.abc.ReceiveStream) -> None:
                out[name] = await _read_all(s)

            nursery.start_soon(read, "stdout", stdout)
            nursery.start_soon(read, "stderr", stderr)
            nursery.start_soon(read, "error", error)
        return out["stdout"], out["stderr"], out["error"]

    with trio.fail_after(20):
        stdout, stderr, error = await serve_spdy(stream, client, client=True)
    assert stdout == b"hello\n" * 20000
    assert stderr == b"oops\n"
    status_obj = json.loads(error)
    assert status_obj["status"] == "Failure"
    assert status_obj["reason"] == "NonZeroExitCode"
    assert status_obj["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_exec_with_a_tty_over_spdy_follows_resizes(kubelet: Kubelet) -> None:
    target = _exec_target("sh", "-c", "read line; stty size; exit 0", stdin=True, tty=True)
    status, head, stream = await spdy_upgrade(kubelet, target, ("v5.channel.k8s.io",))
    assert status == 101, head

    async def client(session: SpdySession) -> tuple[bytes, bytes]:
        error = await session.open_stream({"streamtype": ["error"]})
        stdin = await session.open_stream({"streamtype": ["stdin"]})
        stdout = await session.open_stream({"streamtype": ["stdout"]})
        resize = await session.open_stream({"streamtype": ["resize"]})
        await resize.send_all(b'{"Width":100,"Height":30}\n')
        await trio.sleep(0.5)
        await stdin.send_all(b"go\r")
        return await _read_all(stdout), await _read_all(error)

    with trio.fail_after(20):
        stdout, error = await serve_spdy(stream, client, client=True)
    assert b"30 100" in stdout
    assert json.loads(error) == {"metadata": {}, "status": "Success"}


async def test_exec_over_websocket_v5(kubelet: Kubelet) -> None:
    target = _exec_target("sh", "-c", "cat; exit 7", stdin=True)
    ws = await ws_upgrade(kubelet, target, ["v5.channel.k8s.io", "v4.channel.k8s.io"])
    assert isinstance(ws, WebSocket), ws
    assert ws.subprotocol == "v5.channel.k8s.io"
    await ws.send(b"\x00" + b"data" * 10000)
    await ws.send(b"\xff\x00")  # v5: stdin is closed
    channels: dict[int, bytes] = {}
    with trio.fail_after(20):
        while (message := await ws.receive()) is not None:
            if len(message) > 1 and message[0] != 255:
                channels[message[0]] = channels.get(message[0], b"") + message[1:]
    await trio.aclose_forcefully(ws.transport)
    assert channels[1] == b"data" * 10000
    causes = json.loads(channels[3])["details"]["causes"]
    assert causes == [{"reason": "ExitCode", "message": "7"}]


async def test_exec_without_a_common_protocol_is_refused(kubelet: Kubelet) -> None:
    status, body, _ = await spdy_upgrade(kubelet, _exec_target("true"), ("v2.channel.k8s.io",))
    assert status == 403
    assert b"unable to negotiate protocol" in body
    refused = await ws_upgrade(kubelet, _exec_target("true"), ["base64.channel.k8s.io"])
    assert isinstance(refused, bytes)
    assert b"subprotocols" in refused


async def test_streaming_requests_are_authorized(kubelet: Kubelet) -> None:
    status, body, _ = await spdy_upgrade(kubelet, "/exec/default/forbidden/main?command=true")
    assert (status, body.rsplit(b"\r\n\r\n", 1)[1]) == (403, b"Forbidden\n")


async def test_exec_in_an_unknown_pod_is_404(kubelet: Kubelet) -> None:
    status, body, _ = await spdy_upgrade(kubelet, "/exec/default/nope/main?command=true&output=1")
    assert status == 404
    assert b'pod "nope" not found' in body


async def _echo_server(nursery: trio.Nursery) -> int:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data.upper())

    (listener,) = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
    return int(listener.socket.getsockname()[1])


async def _forward_twice(session: SpdySession, port: int) -> list[bytes]:
    answers = []
    for rid in ("0", "1"):
        headers = {"port": [str(port)], "requestid": [rid]}
        error = await session.open_stream({**headers, "streamtype": ["error"]})
        data = await session.open_stream({**headers, "streamtype": ["data"]})
        await data.send_all(b"ping " + rid.encode())
        await data.send_eof()
        answers.append(await _read_all(data))
        assert await _read_all(error) == b""
    return answers


async def test_port_forward_over_spdy(kubelet: Kubelet, nursery: trio.Nursery) -> None:
    port = await _echo_server(nursery)
    status, head, stream = await spdy_upgrade(
        kubelet, "/portForward/default/web", ("portforward.k8s.io",)
    )
    assert status == 101, head
    with trio.fail_after(20):
        answers = await serve_spdy(stream, lambda s: _forward_twice(s, port), client=True)
    assert answers == [b"PING 0", b"PING 1"]


async def test_port_forward_to_a_closed_port_reports_on_the_error_stream(kubelet: Kubelet) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, _, stream = await spdy_upgrade(
        kubelet, "/portForward/default/web", ("portforward.k8s.io",)
    )
    assert status == 101

    async def client(session: SpdySession) -> bytes:
        headers = {"port": [str(port)], "requestid": ["0"]}
        error = await session.open_stream({**headers, "streamtype": ["error"]})
        await session.open_stream({**headers, "streamtype": ["data"]})
        return await _read_all(error)

    with trio.fail_after(20):
        message = await serve_spdy(stream, client, client=True)
    assert message.startswith(f"error forwarding port {port} to pod default/web".encode())


async def test_port_forward_through_the_websocket_tunnel(
    kubelet: Kubelet, nursery: trio.Nursery
) -> None:
    port = await _echo_server(nursery)
    ws = await ws_upgrade(kubelet, "/portForward/default/web", ["SPDY/3.1+portforward.k8s.io"])
    assert isinstance(ws, WebSocket), ws
    with trio.fail_after(20):
        answers = await serve_spdy(
            MessageStream(ws), lambda s: _forward_twice(s, port), client=True
        )
    assert answers == [b"PING 0", b"PING 1"]
