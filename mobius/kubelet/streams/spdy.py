"""SPDY/3.1 framing: bytes <-> frames, with the zlib header compression SPDY/3 prescribes.

Pure: no I/O and no trio, so the parser can be fed arbitrary bytes in tests. Written by hand
because no maintained Python SPDY library exists (the last ones, ``spdylay`` bindings and
``python-spdy``, were abandoned with SPDY itself); the API server still speaks SPDY/3.1 to
kubelets through ``moby/spdystream``, whose behaviour this module follows:

* Frames (draft-mbelshe-httpbis-spdy-00, SPDY/3.1): a data frame is ``0 | stream id (31) |
  flags (8) | length (24) | data``; a control frame is ``1 | version (15) | type (16) | flags (8)
  | length (24) | data``. Control types: SYN_STREAM 1, SYN_REPLY 2, RST_STREAM 3, SETTINGS 4,
  PING 6, GOAWAY 7, HEADERS 8, WINDOW_UPDATE 9; others are skipped, as the spec asks.
* Header blocks are ``count (32) | (len (32) | name | len (32) | value)*``, several values of
  one name joined by NUL, compressed with ONE zlib stream per direction per connection, seeded
  with the SPDY/3 dictionary and ended by a sync flush. Names are lower case on the wire.
* Flow control: spdystream neither sends nor honours WINDOW_UPDATE, so :class:`Codec` only
  decodes them; the session sends them for data it consumed, which is harmless to spdystream and
  correct for any peer that does count windows.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping

import msgspec

from mobius.errors import MobiusError

__all__ = [
    "DICTIONARY",
    "Codec",
    "DataFrame",
    "Frame",
    "GoAway",
    "HeaderBlock",
    "Headers",
    "Ping",
    "RstStream",
    "Settings",
    "SpdyProtocolError",
    "SynReply",
    "SynStream",
    "WindowUpdate",
]

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_CLEAR_SETTINGS = 0x01
MAX_LENGTH = 0xFFFFFF
MAX_HEADER_BYTES = 1 << 20  # a decompressed header block larger than this is an attack

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9
)  # fmt: skip

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR = 1, 2, 3, 5, 6
STREAM_IN_USE, STREAM_ALREADY_CLOSED = 8, 9

_DICTIONARY_WORDS = (
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
)
_DICTIONARY_TAIL = (
    b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    b"Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    b"Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    b"Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    b"application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
#: The zlib dictionary of SPDY/3 header blocks (section 2.6.10.1 of the SPDY/3 draft).
DICTIONARY = (
    b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + _DICTIONARY_TAIL
)

HeaderBlock = dict[str, list[str]]


class SpdyProtocolError(MobiusError):
    """The peer sent bytes that are not SPDY/3.1; the connection cannot go on."""


class DataFrame(msgspec.Struct, frozen=True):
    stream_id: int
    data: bytes
    fin: bool = False


class SynStream(msgspec.Struct):
    stream_id: int
    headers: HeaderBlock
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


class SynReply(msgspec.Struct):
    stream_id: int
    headers: HeaderBlock
    fin: bool = False


class Headers(msgspec.Struct):
    stream_id: int
    headers: HeaderBlock
    fin: bool = False


class RstStream(msgspec.Struct, frozen=True):
    stream_id: int
    status: int


class Settings(msgspec.Struct, frozen=True):
    entries: tuple[tuple[int, int, int], ...]  # (flags, id, value)
    clear: bool = False


class Ping(msgspec.Struct, frozen=True):
    id: int


class GoAway(msgspec.Struct, frozen=True):
    last_good_stream_id: int
    status: int = 0


class WindowUpdate(msgspec.Struct, frozen=True):
    stream_id: int
    delta: int


Frame = (
    DataFrame | SynStream | SynReply | Headers | RstStream | Settings | Ping | GoAway | WindowUpdate
)


def header(headers: Mapping[str, list[str]], name: str) -> str:
    """The first value of ``name`` (any case), or ""."""
    name = name.lower()
    for k, values in headers.items():
        if k.lower() == name and values:
            return values[0]
    return ""


def _encode_block(headers: Mapping[str, Iterable[str]]) -> bytes:
    parts = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = b"\x00".join(x.encode() for x in values)
        parts += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(parts)


def _decode_block(raw: bytes) -> HeaderBlock:
    def take(at: int) -> tuple[bytes, int]:
        if at + 4 > len(raw):
            raise SpdyProtocolError("truncated header block")
        (n,) = struct.unpack_from(">I", raw, at)
        if at + 4 + n > len(raw):
            raise SpdyProtocolError("truncated header block")
        return raw[at + 4 : at + 4 + n], at + 4 + n

    if len(raw) < 4:
        raise SpdyProtocolError("truncated header block")
    (count,) = struct.unpack_from(">I", raw, 0)
    at, out = 4, {}
    for _ in range(count):
        name, at = take(at)
        value, at = take(at)
        if not name:
            raise SpdyProtocolError("empty header name")
        try:
            out[name.decode()] = value.decode().split("\x00")
        except UnicodeDecodeError as exc:
            raise SpdyProtocolError("header block is not UTF-8") from exc
    return out


class Codec:
    """One connection's framer: :meth:`feed` bytes in, get frames; :meth:`encode` frames out.

    Holds the two zlib streams, so every header block of a connection must pass through the
    same Codec in order.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._compress = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zdict=DICTIONARY)
        self._decompress = zlib.decompressobj(zdict=DICTIONARY)

    def __repr__(self) -> str:
        return f"<spdy.Codec {len(self._buffer)} bytes buffered>"

    # -- reading --------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Every complete frame in what arrived so far; a partial frame stays buffered."""
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        at = 0
        while len(buf) - at >= 8:
            (length,) = struct.unpack_from(">I", buf, at + 4)
            flags, length = length >> 24, length & MAX_LENGTH
            if len(buf) - at - 8 < length:
                break
            body = bytes(buf[at + 8 : at + 8 + length])
            if buf[at] & 0x80:
                (word,) = struct.unpack_from(">I", buf, at)
                version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
                if version != VERSION:
                    raise SpdyProtocolError(f"SPDY version {version}, expected {VERSION}")
                frame = self._control(kind, flags, body)
                if frame is not None:
                    frames.append(frame)
            else:
                (sid,) = struct.unpack_from(">I", buf, at)
                frames.append(DataFrame(sid, body, bool(flags & FLAG_FIN)))
            at += 8 + length
        del buf[:at]
        return frames

    def _headers(self, block: bytes) -> HeaderBlock:
        try:
            raw = self._decompress.decompress(block, MAX_HEADER_BYTES)
        except zlib.error as exc:
            raise SpdyProtocolError(f"bad header compression: {exc}") from exc
        if self._decompress.unconsumed_tail:
            raise SpdyProtocolError("header block too large")
        return _decode_block(raw)

    def _control(self, kind: int, flags: int, body: bytes) -> Frame | None:
        def need(n: int) -> None:
            if len(body) < n:
                raise SpdyProtocolError(f"control frame {kind} too short ({len(body)} bytes)")

        fin = bool(flags & FLAG_FIN)
        if kind == SYN_STREAM:
            need(10)
            sid, assoc, prio = struct.unpack_from(">IIB", body)
            return SynStream(
                sid & 0x7FFFFFFF,
                self._headers(body[10:]),
                associated_id=assoc & 0x7FFFFFFF,
                priority=prio >> 5,
                fin=fin,
                unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if kind in (SYN_REPLY, HEADERS):
            need(4)
            (sid,) = struct.unpack_from(">I", body)
            cls = SynReply if kind == SYN_REPLY else Headers
            return cls(sid & 0x7FFFFFFF, self._headers(body[4:]), fin=fin)
        if kind == RST_STREAM:
            need(8)
            sid, status = struct.unpack_from(">II", body)
            return RstStream(sid & 0x7FFFFFFF, status)
        if kind == SETTINGS:
            need(4)
            (count,) = struct.unpack_from(">I", body)
            need(4 + 8 * count)
            entries = []
            for i in range(count):
                word, value = struct.unpack_from(">II", body, 4 + 8 * i)
                entries.append((word >> 24, word & MAX_LENGTH, value))
            return Settings(tuple(entries), clear=bool(flags & FLAG_CLEAR_SETTINGS))
        if kind == PING:
            need(4)
            return Ping(struct.unpack_from(">I", body)[0])
        if kind == GOAWAY:
            need(4)
            (last,) = struct.unpack_from(">I", body)
            status = struct.unpack_from(">I", body, 4)[0] if len(body) >= 8 else 0
            return GoAway(last & 0x7FFFFFFF, status)
        if kind == WINDOW_UPDATE:
            need(8)
            sid, delta = struct.unpack_from(">II", body)
            return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return None  # unknown control frames are ignored (SPDY/3 section 2.2.1)

    # -- writing --------------------------------------------------------------------------

    def _block(self, headers: Mapping[str, Iterable[str]]) -> bytes:
        raw = _encode_block(headers)
        return self._compress.compress(raw) + self._compress.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        """The wire bytes of one frame (header blocks advance this connection's zlib stream)."""
        if isinstance(frame, DataFrame):
            return _frame_head(frame.stream_id & 0x7FFFFFFF, FLAG_FIN * frame.fin, frame.data)
        if isinstance(frame, SynStream):
            flags = FLAG_FIN * frame.fin | FLAG_UNIDIRECTIONAL * frame.unidirectional
            body = struct.pack(
                ">IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5, 0
            )
            return _control(SYN_STREAM, flags, body + self._block(frame.headers))
        if isinstance(frame, SynReply | Headers):
            kind = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
            body = struct.pack(">I", frame.stream_id) + self._block(frame.headers)
            return _control(kind, FLAG_FIN * frame.fin, body)
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (f << 24) | i, v) for f, i, v in frame.entries
            )
            return _control(SETTINGS, FLAG_CLEAR_SETTINGS * frame.clear, body)
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            body = struct.pack(">II", frame.last_good_stream_id, frame.status)
            return _control(GOAWAY, 0, body)
        body = struct.pack(">II", frame.stream_id, frame.delta)
        return _control(WINDOW_UPDATE, 0, body)


def _frame_head(word: int, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_LENGTH:
        raise ValueError(f"SPDY frame body of {len(body)} bytes exceeds 2**24 - 1")
    return struct.pack(">II", word, (flags << 24) | len(body)) + body


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return _frame_head(0x80000000 | (VERSION << 16) | kind, flags, body)
