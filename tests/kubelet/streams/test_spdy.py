"""SPDY/3.1 framing: known bytes, round trips through two codecs, and malformed input."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobius.kubelet.streams import spdy

stream_ids = st.integers(min_value=1, max_value=2**31 - 1)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=20)
values = st.lists(
    st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        max_size=30,
    ),
    min_size=1,
    max_size=3,
)
header_blocks = st.dictionaries(names, values, max_size=6)

frames = st.one_of(
    st.builds(spdy.DataFrame, stream_ids, st.binary(max_size=3000), st.booleans()),
    st.builds(
        spdy.SynStream,
        stream_ids,
        header_blocks,
        associated_id=st.integers(0, 2**31 - 1),
        priority=st.integers(0, 7),
        fin=st.booleans(),
        unidirectional=st.booleans(),
    ),
    st.builds(spdy.SynReply, stream_ids, header_blocks, fin=st.booleans()),
    st.builds(spdy.Headers, stream_ids, header_blocks, fin=st.booleans()),
    st.builds(spdy.RstStream, stream_ids, st.integers(1, 11)),
    st.builds(
        spdy.Settings,
        st.lists(
            st.tuples(st.integers(0, 255), st.integers(0, 2**24 - 1), st.integers(0, 2**32 - 1)),
            max_size=5,
        ).map(tuple),
        clear=st.booleans(),
    ),
    st.builds(spdy.Ping, st.integers(0, 2**32 - 1)),
    st.builds(spdy.GoAway, st.integers(0, 2**31 - 1), st.integers(0, 2)),
    st.builds(spdy.WindowUpdate, st.integers(0, 2**31 - 1), st.integers(1, 2**31 - 1)),
)


def test_dictionary_is_the_spdy3_one() -> None:
    # zlib streams name their dictionary by Adler-32; this is the one Go's spdy framer uses.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_known_frames() -> None:
    codec = spdy.Codec()
    assert codec.encode(spdy.Ping(1)) == bytes.fromhex("80030006 00000004 00000001")
    assert (
        codec.encode(spdy.DataFrame(3, b"hi", fin=True))
        == bytes.fromhex("00000003 01000002") + b"hi"
    )
    assert codec.encode(spdy.RstStream(5, spdy.CANCEL)) == bytes.fromhex(
        "80030003 00000008 00000005 00000005"
    )


@given(st.lists(frames, max_size=8), st.data())
def test_frames_round_trip_in_any_chunking(sent: list[spdy.Frame], data: st.DataObject) -> None:
    writer, reader = spdy.Codec(), spdy.Codec()
    wire = b"".join(writer.encode(f) for f in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    received: list[spdy.Frame] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        received += reader.feed(wire[a:b])
    assert received == sent


def test_header_names_go_lower_case_and_values_split_on_nul() -> None:
    writer, reader = spdy.Codec(), spdy.Codec()
    (frame,) = reader.feed(
        writer.encode(spdy.SynStream(1, {"StreamType": ["data"], "port": ["80", "81"]}))
    )
    assert isinstance(frame, spdy.SynStream)
    assert frame.headers == {"streamtype": ["data"], "port": ["80", "81"]}
    assert spdy.header(frame.headers, "streamType") == "data"


def test_unknown_control_frames_are_skipped() -> None:
    unknown = struct.pack(">II", 0x80030000 | 0x0F, 4) + b"abcd"
    assert spdy.Codec().feed(unknown + spdy.Codec().encode(spdy.Ping(2))) == [spdy.Ping(2)]


@pytest.mark.parametrize(
    "wire",
    [
        struct.pack(">II", 0x80020006, 4) + b"\0\0\0\1",  # SPDY/2
        struct.pack(">II", 0x80030002, 8) + b"\0\0\0\1" + b"junk",  # not zlib
        struct.pack(">II", 0x80030006, 2) + b"\0\0",  # PING too short
    ],
)
def test_malformed_input_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(spdy.SpdyProtocolError):
        spdy.Codec().feed(wire)


def test_header_bombs_are_refused() -> None:
    block = spdy._encode_block({"x": ["a" * (spdy.MAX_HEADER_BYTES + 10)]})
    compressor = zlib.compressobj(zdict=spdy.DICTIONARY)
    body = struct.pack(">I", 1) + compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(spdy.SpdyProtocolError, match="too large"):
        spdy.Codec().feed(struct.pack(">II", 0x80030002, len(body)) + body)
