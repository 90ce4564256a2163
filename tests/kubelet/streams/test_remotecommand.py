"""The remotecommand protocol's pure parts: options, Status JSON, resize decoding."""

from __future__ import annotations

import json

import trio
from hypothesis import given
from hypothesis import strategies as st

from mobius.kubelet.streams.remotecommand import (
    ExecOptions,
    TerminalSize,
    exit_status,
    terminal_sizes,
)


def test_options_from_the_kubelet_query() -> None:
    options = ExecOptions.from_query(
        {"command": ["sh", "-c", "x"], "input": ["1"], "output": ["1"], "tty": ["true"]}
    )
    assert options == ExecOptions(command=("sh", "-c", "x"), stdin=True, stdout=True, tty=True)
    assert options.channels() == {"error", "stdin", "stdout", "resize"}
    plain = ExecOptions.from_query({"command": ["ls"], "output": ["1"], "error": ["1"]})
    assert plain.channels() == {"error", "stdout", "stderr"}


def test_exit_status_is_what_kubectl_turns_into_an_exit_code() -> None:
    assert json.loads(exit_status(0)) == {"metadata": {}, "status": "Success"}
    failure = json.loads(exit_status(3))
    assert failure["status"] == "Failure"
    assert failure["reason"] == "NonZeroExitCode"
    assert failure["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


class _Chunks(trio.abc.ReceiveStream):
    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@given(
    st.lists(st.tuples(st.integers(1, 500), st.integers(1, 500)), max_size=5),
    st.booleans(),
    st.data(),
)
def test_resize_messages_back_to_back_in_any_chunking(
    sizes: list[tuple[int, int]], newlines: bool, data: st.DataObject
) -> None:
    wire = b"".join(
        json.dumps({"Width": w, "Height": h}).encode() + (b"\n" if newlines else b"")
        for w, h in sizes
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=5)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if wire[a:b]]

    async def decode() -> list[TerminalSize]:
        return [s async for s in terminal_sizes(_Chunks(chunks))]

    assert trio.run(decode) == [TerminalSize(width=w, height=h) for w, h in sizes]
