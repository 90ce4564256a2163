"""Container logs on disk: the layout, the CRI line format, and reading them back. Pure.

Layout, under the pod folder (``<state dir>/pods/<uid>/``)::

    logs/<container>/<run>.log   one file per run of the container: 0 for the first run,
                                 n after n restarts (``ctl/c/<container>.restarts``)

Each file holds CRI log lines, the format the kubelet and containerd/CRI-O use::

    <RFC3339Nano time> <stdout|stderr> <F|P> <text>\\n

``F`` ends a line of the container's output; ``P`` is a piece of a longer line (or a last line
without a newline), to be joined with what follows from the same stream. The text is the
container's bytes as they came (any encoding, CR kept); only NUL bytes are lost, because bash
cannot hold them. Both streams of a run go to one file, in the order the writer got them, so
stdout and stderr stay apart and in order.

The job script writes the files with :data:`SHELL_LOG_WRITER`: one bash reader per stream, no
fork per line and nothing but bash on the compute node. The kubelet API reads them back with
:func:`parse_record`, :func:`tail_start` and :class:`LogRenderer`, which apply the options of a
``GET /containerLogs`` (:func:`parse_log_options`) the way the kubelet does.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Mapping

import msgspec

from mobius.errors import ParseError

__all__ = [
    "MAX_CHUNK",
    "SHELL_LOG_WRITER",
    "STREAMS",
    "InvalidLogOptions",
    "LogOptions",
    "LogRecord",
    "LogRenderer",
    "encode",
    "format_time",
    "parse_log_options",
    "parse_record",
    "parse_time",
    "render",
    "run_file_name",
    "tail_start",
]

STREAMS = ("stdout", "stderr")
# Longest text of one record: a record stays under 4 KiB, so each is one write(2) and the two
# writers of a run (one per stream, same file, O_APPEND) never split each other's records.
MAX_CHUNK = 4000

SHELL_LOG_WRITER = rf"""# cri_log STREAM FILE: stdin -> FILE as CRI log lines "<time> STREAM F|P <text>", one write
# per line (see mobius/pods/logformat.py). TERM is ignored: the reader ends when the container's
# end of the pipe closes, so the container's last words are kept.
cri_log() {{
  trap '' TERM INT
  local LC_ALL=C line tag t ts
  export TZ=UTC
  while :; do
    line=
    if IFS= read -r -n {MAX_CHUNK} line; then
      if [ "${{#line}}" -lt {MAX_CHUNK} ]; then tag=F; else tag=P; fi
    elif [ -n "$line" ]; then
      tag=P
    else
      break
    fi
    t=${{EPOCHREALTIME:-}}
    [ -n "$t" ] || printf -v t '%(%s)T.000000' -1
    printf -v ts '%(%Y-%m-%dT%H:%M:%S)T' "${{t%.*}}"
    printf '%s.%s000Z %s %s %s\n' "$ts" "${{t#*.}}" "$1" "$tag" "$line"
  done >>"$2"
}}"""

_TIME = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d\d):(\d\d))"
)
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"", "0", "f", "F", "false", "FALSE", "False"})
_STREAM_PARAM = {"All": None, "Stdout": "stdout", "Stderr": "stderr"}


def run_file_name(run: int) -> str:
    """The file of a container's ``run``-th start (0 = first) inside ``logs/<container>/``."""
    return f"{run}.log"


# --------------------------------------------------------------------------------------------
# Times


def parse_time(raw: bytes | str) -> int:
    """An RFC 3339 time (any fraction of a second, ``Z`` or an offset) -> ns since the epoch."""
    data = raw.encode() if isinstance(raw, str) else raw
    m = _TIME.fullmatch(data)
    if m is None:
        raise ParseError("RFC 3339 time", data.decode(errors="replace"))
    y, mo, d, h, mi, s, frac, sign, oh, om = m.groups()
    try:
        seconds = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    except (ValueError, OverflowError) as exc:
        raise ParseError("RFC 3339 time", data.decode(errors="replace")) from exc
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31 and int(h) < 24 and int(mi) < 60):
        raise ParseError("RFC 3339 time", data.decode(errors="replace"))
    if sign:
        offset = int(oh) * 3600 + int(om) * 60
        seconds -= offset if sign == b"+" else -offset
    return seconds * 1_000_000_000 + int((frac or b"0").ljust(9, b"0"))


def format_time(ns: int) -> str:
    """ns since the epoch -> RFC 3339 with nine fraction digits, as the kubelet prints them."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


# --------------------------------------------------------------------------------------------
# Records


class LogRecord(msgspec.Struct, frozen=True):
    """One CRI log line: ``text`` without the record's own newline."""

    time: bytes  # as written; parse with parse_time when needed
    stream: str
    partial: bool
    text: bytes


def parse_record(line: bytes) -> LogRecord:
    """One CRI log line (with or without its trailing newline) -> LogRecord."""
    body = line[:-1] if line.endswith(b"\n") else line
    parts = body.split(b" ", 3)
    if len(parts) != 4 or parts[1] not in (b"stdout", b"stderr"):
        raise ParseError("CRI log line", body[:200].decode(errors="replace"))
    tag = parts[2].split(b":", 1)[0]  # CRI allows tag:tag; the first is F or P
    if tag not in (b"F", b"P"):
        raise ParseError("CRI log line", body[:200].decode(errors="replace"))
    return LogRecord(time=parts[0], stream=parts[1].decode(), partial=tag == b"P", text=parts[3])


def encode(stream: str, data: bytes, *, ns: int) -> bytes:
    """``data`` written by ``stream`` at ``ns``, as :data:`SHELL_LOG_WRITER` writes it."""
    ts = format_time(ns).encode()
    head = b"%s %s " % (ts, stream.encode())
    out: list[bytes] = []
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        if last and not line:
            break
        while len(line) >= MAX_CHUNK:
            out.append(head + b"P " + line[:MAX_CHUNK] + b"\n")
            line = line[MAX_CHUNK:]
        if last:
            if line:
                out.append(head + b"P " + line + b"\n")
        else:
            out.append(head + b"F " + line + b"\n")
    return b"".join(out)


# --------------------------------------------------------------------------------------------
# Options of GET /containerLogs


class InvalidLogOptions(ValueError):
    """A query parameter of a log request that cannot be used; the message says which."""


class LogOptions(msgspec.Struct, frozen=True, kw_only=True):
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_ns: int | None = None  # absolute: sinceSeconds is resolved against "now"
    stream: str | None = None  # None: both


def _bool(query: Mapping[str, str], key: str) -> bool:
    value = query.get(key, "")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidLogOptions(f"{key}={value!r} is not a boolean")


def _int(query: Mapping[str, str], key: str, minimum: int) -> int | None:
    if key not in query:
        return None
    try:
        value = int(query[key])
    except ValueError:
        raise InvalidLogOptions(f"{key}={query[key]!r} is not an integer") from None
    if value < minimum:
        raise InvalidLogOptions(f"{key} must be at least {minimum}, not {value}")
    return value


def parse_log_options(query: Mapping[str, str], *, now_ns: int) -> LogOptions:
    """The PodLogOptions of a kubelet log request, validated as the API server does."""
    since_seconds = _int(query, "sinceSeconds", 1)
    since_ns: int | None = None
    if "sinceTime" in query:
        if since_seconds is not None:
            raise InvalidLogOptions("at most one of sinceTime or sinceSeconds may be specified")
        try:
            since_ns = parse_time(query["sinceTime"])
        except ParseError:
            raise InvalidLogOptions(
                f"sinceTime={query['sinceTime']!r} is not an RFC 3339 time"
            ) from None
    elif since_seconds is not None:
        since_ns = now_ns - since_seconds * 1_000_000_000
    stream_param = query.get("stream", "All")
    if stream_param not in _STREAM_PARAM:
        raise InvalidLogOptions(f"stream={stream_param!r} is not one of All, Stdout, Stderr")
    stream = _STREAM_PARAM[stream_param]
    tail_lines = _int(query, "tailLines", 0)
    return LogOptions(
        follow=_bool(query, "follow"),
        previous=_bool(query, "previous"),
        timestamps=_bool(query, "timestamps"),
        tail_lines=tail_lines,
        limit_bytes=_int(query, "limitBytes", 1),
        since_ns=since_ns,
        stream=stream,
    )


# --------------------------------------------------------------------------------------------
# Reading back


def _stream_and_tag(record: bytes) -> tuple[bytes, bytes]:
    """The stream and tag of a raw record, without a full parse (for scanning backwards)."""
    first = record.find(b" ")
    second = record.find(b" ", first + 1)
    third = record.find(b" ", second + 1)
    if first < 0 or second < 0 or third < 0:
        return b"", b""
    return record[first + 1 : second], record[second + 1 : third][:1]


def tail_start(data: bytes, lines: int, *, stream: str | None = None) -> int | None:
    """Offset in ``data`` (whole CRI records) where its last ``lines`` lines begin.

    A line is a run of ``P`` records closed by an ``F`` record, or the unfinished run at the end.
    ``None`` if ``data`` holds fewer lines: the caller reads further back, or, at the start of
    the file, starts at 0.
    """
    if lines <= 0:
        return len(data)
    want = stream.encode() if stream else None
    end = len(data)
    seen = 0
    first = True  # the last record that counts: an unfinished line counts as one
    while end > 0:
        start = data.rfind(b"\n", 0, end - 1) + 1
        rec_stream, tag = _stream_and_tag(data[start:end])
        if want is None or rec_stream == want:
            if tag == b"F" or (first and tag == b"P"):
                if seen == lines:
                    return end
                seen += 1
            first = False
        end = start
    return None


class LogRenderer:
    """What a client sees of CRI records, per :class:`LogOptions`; fed record by record.

    Without timestamps the CRI prefix goes and ``P`` pieces join into their line; with them
    every line starts with its time (nine fraction digits). ``done`` turns true when
    ``limit_bytes`` have been produced.
    """

    def __init__(self, options: LogOptions) -> None:
        self.options = options
        self.remaining = options.limit_bytes
        self._line_open: dict[str, bool] = dict.fromkeys(STREAMS, False)
        self.skipped = 0  # records that were not CRI lines

    def __repr__(self) -> str:
        return f"<LogRenderer {self.options!r} remaining={self.remaining}>"

    @property
    def done(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def feed(self, line: bytes) -> bytes:
        if self.done:
            return b""
        try:
            record = parse_record(line)
        except ParseError:
            self.skipped += 1
            return b""
        opts = self.options
        if opts.stream is not None and record.stream != opts.stream:
            return b""
        continuing = self._line_open[record.stream]
        if opts.since_ns is not None and not continuing:
            try:
                if parse_time(record.time) < opts.since_ns:
                    return b""
            except ParseError:
                self.skipped += 1
                return b""
        self._line_open[record.stream] = record.partial
        out = record.text if record.partial else record.text + b"\n"
        if opts.timestamps and not continuing:
            try:
                prefix = format_time(parse_time(record.time)).encode()
            except ParseError:
                prefix = record.time
            out = prefix + b" " + out
        if self.remaining is not None:
            out = out[: self.remaining]
            self.remaining -= len(out)
        return out


def render(data: bytes, options: LogOptions) -> bytes:
    """All of ``data`` (CRI records) rendered at once; a convenience for whole files."""
    renderer = LogRenderer(options)
    return b"".join(renderer.feed(line) for line in _records(data))


def _records(data: bytes) -> Iterable[bytes]:
    return data.splitlines(keepends=True) if b"\r" not in data else _split_nl(data)


def _split_nl(data: bytes) -> Iterable[bytes]:
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            yield data[start:]
            return
        yield data[start : end + 1]
        start = end + 1
