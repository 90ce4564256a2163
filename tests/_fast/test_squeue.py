"""``parse_squeue``: both twins on examples, on errors, and against each other (hypothesis)."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mobius._fast
from mobius._fast import SQUEUE_FORMAT, SqueueRow, _squeue_py
from mobius._fast._rows import WHAT_FIELDS, WHAT_JOB_ID, WHAT_STATE
from mobius.errors import ParseError

from .conftest import Parser, compiled_module, extensions_required

# What `squeue --noheader --format=SQUEUE_FORMAT` prints (pending jobs have no nodes).
OUTPUT = """\
4000001|RUNNING|None|2024-06-01T12:00:00|2024-06-02T12:00:00|node[001-004]|0c5e4a4e-7d1c-4c7b-9a43-0f6b1f1f2d3a
123_4|RUNNING|None|2024-06-01T12:00:05|2024-06-01T13:00:05|gpu017|array task
123_[5-9]|PENDING|Priority|N/A|N/A||array pending
123_[10-99:3%4]|PENDING|Resources|2024-06-03T00:00:00|2024-06-03T01:00:00||throttled range
77+0|RUNNING|None|2024-06-01T11:00:00|2024-06-01T12:00:00|node005|het
77+1|RUNNING|None|2024-06-01T11:00:00|2024-06-01T12:00:00|gpu[001,003]|het
4000002|PENDING|ReqNodeNotAvail, UnavailableNodes:n1|N/A|N/A||a|b||c
4000003|CANCELLED|(null)|2024-06-01T10:00:00|2024-06-01T10:05:00|node002|
4000004|COMPLETING|NonZeroExitCode|2024-06-01T09:00:00|2024-06-01T09:30:00|node003| spaced |
"""

EXPECTED = [
    SqueueRow(
        "4000001",
        "RUNNING",
        "None",
        "2024-06-01T12:00:00",
        "2024-06-02T12:00:00",
        "node[001-004]",
        "0c5e4a4e-7d1c-4c7b-9a43-0f6b1f1f2d3a",
    ),
    SqueueRow(
        "123_4",
        "RUNNING",
        "None",
        "2024-06-01T12:00:05",
        "2024-06-01T13:00:05",
        "gpu017",
        "array task",
    ),
    SqueueRow("123_[5-9]", "PENDING", "Priority", "N/A", "N/A", "", "array pending"),
    SqueueRow(
        "123_[10-99:3%4]",
        "PENDING",
        "Resources",
        "2024-06-03T00:00:00",
        "2024-06-03T01:00:00",
        "",
        "throttled range",
    ),
    SqueueRow(
        "77+0", "RUNNING", "None", "2024-06-01T11:00:00", "2024-06-01T12:00:00", "node005", "het"
    ),
    SqueueRow(
        "77+1",
        "RUNNING",
        "None",
        "2024-06-01T11:00:00",
        "2024-06-01T12:00:00",
        "gpu[001,003]",
        "het",
    ),
    SqueueRow(
        "4000002", "PENDING", "ReqNodeNotAvail, UnavailableNodes:n1", "N/A", "N/A", "", "a|b||c"
    ),
    SqueueRow(
        "4000003",
        "CANCELLED",
        "(null)",
        "2024-06-01T10:00:00",
        "2024-06-01T10:05:00",
        "node002",
        "",
    ),
    SqueueRow(
        "4000004",
        "COMPLETING",
        "NonZeroExitCode",
        "2024-06-01T09:00:00",
        "2024-06-01T09:30:00",
        "node003",
        " spaced |",
    ),
]


def test_format_puts_the_name_last() -> None:
    fields = SQUEUE_FORMAT.split("|")
    assert fields == ["%A", "%T", "%r", "%S", "%e", "%N", "%j"]
    assert len(fields) == len(SqueueRow.__struct_fields__)


def test_parses_real_looking_output(parser: Parser) -> None:
    assert parser(OUTPUT) == EXPECTED


def test_without_trailing_newline(parser: Parser) -> None:
    assert parser(OUTPUT.rstrip("\n")) == EXPECTED


@pytest.mark.parametrize("text", ["", "\n", "\n\n\n"])
def test_empty_output(parser: Parser, text: str) -> None:
    assert parser(text) == []


def test_skips_empty_lines(parser: Parser) -> None:
    lines = OUTPUT.splitlines()
    assert parser("\n" + "\n\n".join(lines) + "\n\n") == EXPECTED


def test_strips_nothing(parser: Parser) -> None:
    (row,) = parser("5|PENDING| Priority |N/A |\tN/A| n1 | name\r\n")
    assert row == SqueueRow("5", "PENDING", " Priority ", "N/A ", "\tN/A", " n1 ", " name\r")


@pytest.mark.parametrize(
    "name",
    ["é-latin1", "Ωmega-ucs2", "🚀-ucs4", "|", "||||||", "a|b|c|d|e|f|g|h"],
)
def test_names_of_any_width_and_with_bars(parser: Parser, name: str) -> None:
    # Exercises the one-, two- and four-byte str layouts of the compiled twin.
    text = f"1|RUNNING|None|N/A|N/A|n1|{name}\n2|PENDING|Priority|N/A|N/A||{name}{name}\n"
    assert [row.name for row in parser(text)] == [name, name + name]


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("4000001|RUNNING|None|N/A|N/A|node001", WHAT_FIELDS),
        ("4000001", WHAT_FIELDS),
        ("   ", WHAT_FIELDS),
        ("|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("job|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        (" 12|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12 |RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("-12|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12_|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12_x|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12_[]|PENDING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12_[1-3|PENDING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12_[1-3]x|PENDING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12_[a]|PENDING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12+|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12+1+2|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("12_3+1|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),
        ("١٢٣|RUNNING|None|N/A|N/A|n1|name", WHAT_JOB_ID),  # digits, but not ASCII ones
        ("12|running|None|N/A|N/A|n1|name", WHAT_STATE),
        ("12||None|N/A|N/A|n1|name", WHAT_STATE),
        ("12|RUNNING |None|N/A|N/A|n1|name", WHAT_STATE),
        ("12|RUN-NING|None|N/A|N/A|n1|name", WHAT_STATE),
        ("12|ÉTAT|None|N/A|N/A|n1|name", WHAT_STATE),
    ],
)
def test_errors_name_the_line(parser: Parser, line: str, what: str) -> None:
    good = "1|RUNNING|None|N/A|N/A|n1|ok"
    with pytest.raises(ParseError) as info:
        parser(f"{good}\n\n{line}\n{good}\n")
    assert (info.value.what, info.value.line, info.value.lineno) == (what, line, 3)
    assert str(info.value) == f"cannot parse {what} line 3: {line!r}"


def test_error_on_the_last_line_without_newline(parser: Parser) -> None:
    with pytest.raises(ParseError, match=r"line 2: '12\|RUNNING'$"):
        parser("1|RUNNING|None|N/A|N/A|n1|ok\n12|RUNNING")


# --- hypothesis: the compiled twin is the reference, only faster ---------------------------

_NOT_NEWLINE = st.characters(blacklist_characters="\n")
_FIELD = st.text(st.characters(blacklist_characters="|\n"), max_size=12)
_DIGITS = st.integers(0, 10**9).map(str)
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"

job_ids = st.one_of(
    _DIGITS,
    st.builds("{}_{}".format, _DIGITS, _DIGITS),
    st.builds("{}_[{}]".format, _DIGITS, st.text("0123456789,:%-", min_size=1, max_size=12)),
    st.builds("{}+{}".format, _DIGITS, _DIGITS),
)
states = st.one_of(
    st.sampled_from(["PENDING", "RUNNING", "COMPLETING", "COMPLETED", "CANCELLED", "FAILED"]),
    st.text(_UPPER, min_size=1, max_size=12),
)
reasons = st.one_of(
    st.sampled_from(
        ["None", "(null)", "Priority", "Resources", "ReqNodeNotAvail, UnavailableNodes:n1"]
    ),
    _FIELD,
)
times = st.one_of(
    st.just("N/A"),
    st.builds(
        "2024-06-{:02d}T{:02d}:{:02d}:00".format,
        st.integers(1, 30),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
    _FIELD,
)
names = st.text(_NOT_NEWLINE, max_size=40)


@st.composite
def rows(draw: st.DrawFn) -> SqueueRow:
    return SqueueRow(
        draw(job_ids),
        draw(states),
        draw(reasons),
        draw(times),
        draw(times),
        draw(_FIELD),
        draw(names),
    )


def line_of(row: SqueueRow) -> str:
    return "|".join(getattr(row, field) for field in SqueueRow.__struct_fields__)


@st.composite
def near_misses(draw: st.DrawFn, valid: st.SearchStrategy[str], pieces: str) -> str:
    """A valid value with a few characters deleted, replaced or inserted."""
    value = draw(valid)
    for _ in range(draw(st.integers(1, 2))):
        start = draw(st.integers(0, len(value)))
        end = draw(st.integers(start, min(len(value), start + 3)))
        value = value[:start] + draw(st.text(pieces, max_size=2)) + value[end:]
    return value


near_job_ids = near_misses(job_ids, "0123456789_[]+,:%- x\u0661")  # U+0661: ARABIC-INDIC DIGIT ONE
near_states = near_misses(states, "AZ_a -É0")


@st.composite
def bad_lines(draw: st.DrawFn) -> str:
    line = line_of(draw(rows()))
    how = draw(st.sampled_from(["truncate", "garbage", "mutate"]))
    if how == "truncate":
        return line[: draw(st.integers(0, len(line)))]
    if how == "garbage":
        return draw(st.text(st.one_of(_NOT_NEWLINE, st.just("|")), max_size=60))
    fields = line.split("|", 6)
    fields[0] = draw(st.one_of(st.just(fields[0]), near_job_ids, _FIELD))
    fields[1] = draw(st.one_of(st.just(fields[1]), near_states, _FIELD))
    return "|".join(fields)


outputs = st.one_of(
    st.lists(st.one_of(rows().map(line_of), bad_lines(), st.just("")), max_size=12).map("\n".join),
    st.text(st.sampled_from("0123456789_[]+,-:%|ABZ_az\n é🚀"), max_size=80),
    st.text(),
)


def outcome(parse: Parser, text: str) -> object:
    try:
        return ("rows", parse(text))
    except ParseError as exc:
        return ("error", type(exc), str(exc), exc.what, exc.line, exc.lineno)


@settings(max_examples=500)
@given(text=outputs)
@example(text="")
@example(text=OUTPUT)
@example(text="12_[1-3]|PENDING|||||")
def test_compiled_twin_equals_the_reference(compiled_parser: Parser, text: str) -> None:
    assert outcome(compiled_parser, text) == outcome(_squeue_py.parse_squeue, text)


@settings(max_examples=1000)
@given(
    job_id=st.one_of(job_ids, near_job_ids, _FIELD),
    state=st.one_of(states, near_states, _FIELD),
)
def test_twins_agree_on_job_ids_and_states(
    compiled_parser: Parser, job_id: str, state: str
) -> None:
    text = f"1|RUNNING|None|N/A|N/A|n1|first\n{job_id}|{state}|None|N/A|N/A|n1|second"
    assert outcome(compiled_parser, text) == outcome(_squeue_py.parse_squeue, text)


@given(lines=st.lists(rows(), max_size=20), trailing=st.booleans())
def test_valid_rows_round_trip(parser: Parser, lines: list[SqueueRow], trailing: bool) -> None:
    text = "\n".join(line_of(row) for row in lines) + ("\n" if trailing else "")
    assert parser(text) == lines


# --- which twin mobius._fast picked ----------------------------------------------------------


def _selected(env: dict[str, str]) -> str:
    code = "import mobius._fast as f; print(f.COMPILED, f.parse_squeue.__module__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_selector_is_consistent() -> None:
    compiled = mobius._fast.parse_squeue is not _squeue_py.parse_squeue
    assert mobius._fast.COMPILED is compiled


def test_selector_honours_no_extensions() -> None:
    assert _selected({"MOBIUS_NO_EXTENSIONS": "1"}) == "False mobius._fast._squeue_py"


@pytest.mark.skipif(not extensions_required(), reason="MOBIUS_REQUIRE_EXTENSIONS is not set")
def test_compiled_twin_really_loaded() -> None:
    module = compiled_module("_squeue")
    assert module.__file__ is not None
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert _selected({"MOBIUS_NO_EXTENSIONS": ""}) == "True mobius._fast._squeue"
    if os.environ.get("MOBIUS_NO_EXTENSIONS", "") in ("", "0"):
        assert mobius._fast.COMPILED
        assert mobius._fast.parse_squeue is module.parse_squeue
