"""The CRI log format (mobius.pods.logformat): parsing, options, tail, rendering, and the bash
writer of the job script checked against the Python reference on arbitrary bytes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius.errors import ParseError
from mobius.pods.logformat import (
    MAX_CHUNK,
    SHELL_LOG_WRITER,
    InvalidLogOptions,
    LogOptions,
    encode,
    format_time,
    parse_log_options,
    parse_record,
    parse_time,
    render,
    tail_start,
)

T0 = 1_700_000_000_123_456_789


def test_parse_record() -> None:
    r = parse_record(b"2024-01-02T03:04:05.123456789Z stderr F hello world\n")
    assert (r.stream, r.partial, r.text) == ("stderr", False, b"hello world")
    assert parse_record(b"2024-01-02T03:04:05Z stdout P \n").text == b""
    with pytest.raises(ParseError):
        parse_record(b"garbage\n")
    with pytest.raises(ParseError):
        parse_record(b"2024-01-02T03:04:05Z stdin F x\n")


def test_times() -> None:
    assert format_time(T0) == "2023-11-14T22:13:20.123456789Z"
    assert parse_time(format_time(T0)) == T0
    assert parse_time("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000_000_000
    with pytest.raises(ParseError):
        parse_time("yesterday")


@given(st.integers(min_value=0, max_value=4_000_000_000 * 10**9))
def test_time_round_trip(ns: int) -> None:
    assert parse_time(format_time(ns)) == ns


def test_options() -> None:
    o = parse_log_options({"follow": "true", "tailLines": "3", "timestamps": "1"}, now_ns=T0)
    assert (o.follow, o.tail_lines, o.timestamps, o.previous) == (True, 3, True, False)
    assert parse_log_options({"sinceSeconds": "2"}, now_ns=T0).since_ns == T0 - 2 * 10**9
    assert parse_log_options({"sinceTime": "2023-11-14T22:13:20Z"}, now_ns=T0).since_ns == T0 - 123456789
    assert parse_log_options({"stream": "Stderr"}, now_ns=T0).stream == "stderr"
    for bad in ({"tailLines": "-1"}, {"limitBytes": "0"}, {"follow": "maybe"}, {"sinceTime": "x"},
                {"sinceSeconds": "1", "sinceTime": "2023-11-14T22:13:20Z"}, {"stream": "Both"}):
        with pytest.raises(InvalidLogOptions):
            parse_log_options(bad, now_ns=T0)


def _log(*parts: tuple[str, bytes]) -> bytes:
    return b"".join(encode(stream, data, ns=T0 + i) for i, (stream, data) in enumerate(parts))


def test_render_merges_streams_in_order_and_joins_pieces() -> None:
    data = _log(("stdout", b"a\n"), ("stderr", b"b\n"), ("stdout", b"c" * (MAX_CHUNK + 5) + b"\n"))
    assert render(data, LogOptions()) == b"a\nb\n" + b"c" * (MAX_CHUNK + 5) + b"\n"
    assert render(data, LogOptions(stream="stderr")) == b"b\n"
    stamped = render(data, LogOptions(timestamps=True)).split(b"\n")
    assert stamped[0] == format_time(T0).encode() + b" a"
    assert stamped[2].startswith(format_time(T0 + 2).encode() + b" ccc")
    assert render(data, LogOptions(limit_bytes=3)) == b"a\nb"
    assert render(data, LogOptions(since_ns=T0 + 1)) == b"b\n" + b"c" * (MAX_CHUNK + 5) + b"\n"


def test_tail() -> None:
    data = _log(("stdout", b"1\n2\n"), ("stderr", b"e\n"), ("stdout", b"x" * (MAX_CHUNK * 2) + b"\n3"))
    for n, want in [(0, b""), (1, b"3"), (2, b"x" * (MAX_CHUNK * 2) + b"\n3"),
                    (3, b"e\n" + b"x" * (MAX_CHUNK * 2) + b"\n3")]:
        start = tail_start(data, n)
        assert start is not None
        assert render(data[start:], LogOptions()) == want
    assert tail_start(data, 10) is None  # fewer lines: read further back, or start at 0
    assert tail_start(data, 1, stream="stderr") is None
    assert tail_start(data, 0, stream="stderr") == len(data)


@given(st.binary(max_size=3 * MAX_CHUNK))
def test_round_trip_of_arbitrary_bytes(data: bytes) -> None:
    assert render(encode("stdout", data, ns=T0), LogOptions()) == data


# --------------------------------------------------------------------------------------------
# The bash writer


def _bash_writer(tmp: Path, data: bytes) -> bytes:
    script = tmp / "w.sh"
    script.write_text(SHELL_LOG_WRITER + '\ncri_log stdout "$1"\n')
    out = tmp / "out.log"
    out.unlink(missing_ok=True)
    subprocess.run(["bash", str(script), str(out)], input=data, check=True, timeout=30,
                   env={"PATH": os.environ["PATH"]})
    return out.read_bytes() if out.exists() else b""


# Bash cannot hold NUL bytes: the writer drops them (documented in logformat).
_no_nul = st.binary(max_size=2 * MAX_CHUNK + 10).map(lambda b: b.replace(b"\0", b""))
_lines = st.lists(st.sampled_from([b"", b"\r", b"a b", b"\xff\xfe", b"\\n", b"x" * MAX_CHUNK, b"\t "]),
                  max_size=6).map(lambda parts: b"\n".join(parts))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(_no_nul, _lines))
def test_bash_writer_round_trips(tmp_path: Path, data: bytes) -> None:
    written = _bash_writer(tmp_path, data)
    assert render(written, LogOptions()) == data
    for line in written.split(b"\n")[:-1]:
        assert len(line) < 4096  # one write(2) per record
        parse_record(line)


def test_bash_writer_matches_the_reference_up_to_time(tmp_path: Path) -> None:
    data = b"one\n\ntwo\r\n" + b"y" * (MAX_CHUNK + 1) + b"\nlast"
    written = _bash_writer(tmp_path, data)
    reference = encode("stdout", data, ns=T0)
    strip = [line.split(b" ", 1)[1] for line in written.split(b"\n")[:-1]]
    assert strip == [line.split(b" ", 1)[1] for line in reference.split(b"\n")[:-1]]
    for line in written.split(b"\n")[:-1]:
        assert abs(parse_time(parse_record(line).time) - time.time_ns()) < 60 * 10**9
