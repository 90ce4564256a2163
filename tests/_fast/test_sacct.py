"""``parse_sacct``: both twins on examples, on errors, and against each other (hypothesis)."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mobius._fast
from mobius._fast import SACCT_FORMAT, SacctRow, _sacct_py
from mobius._fast._rows import (
    WHAT_SACCT_EXIT_CODE,
    WHAT_SACCT_FIELDS,
    WHAT_SACCT_JOB_ID,
    WHAT_SACCT_STATE,
)
from mobius.errors import ParseError

from .conftest import SacctParser, compiled_module, extensions_required

DATA = Path(__file__).parent / "data"

# What `sacct --noheader --parsable2 --format=SACCT_FORMAT` prints, steps included (no
# --allocations): batch, extern and numbered steps, array tasks and ranges, het components and
# het steps, who cancelled, signals, pending steps, names with '|'.
OUTPUT = """\
123|123|COMPLETED|0:0|None|2024-06-01T12:00:00|2024-06-01T12:10:00|node[001-002]|web
123.batch|123.batch|COMPLETED|0:0||2024-06-01T12:00:00|2024-06-01T12:10:00|node001|batch
123.extern|123.extern|COMPLETED|0:0||2024-06-01T12:00:00|2024-06-01T12:10:00|node[001-002]|extern
123.0|123.0|COMPLETED|0:0||2024-06-01T12:00:01|2024-06-01T12:09:59|node[001-002]|hostname
124|124|CANCELLED by 1000|0:15|None|2024-06-01T12:00:00|2024-06-01T12:01:00|node003|a|b||c
125|125|FAILED|3:0|NonZeroExitCode|2024-06-01T12:00:00|2024-06-01T12:00:01|node003|fails
126|126|FAILED|0:9|JobLaunchFailure|2024-06-01T12:00:00|2024-06-01T12:00:00|node003|killed
130_4|134|RUNNING|0:0|None|2024-06-01T12:00:00|Unknown|gpu017|array task
130_4.batch|134.batch|RUNNING|0:0||2024-06-01T12:00:00|Unknown|gpu017|batch
130_[5-9%2]|130|PENDING|0:0|JobArrayTaskLimit|Unknown|Unknown|None assigned|array rest
131_[1,3,5,7...]|131|PENDING|0:0|None|Unknown|Unknown|None assigned|cut range
77+0|77|RUNNING|0:0|None|2024-06-01T11:00:00|Unknown|node005|het
77+1|78|RUNNING|0:0|None|2024-06-01T11:00:00|Unknown|gpu[001,003]|het
77+1.0|78.0|RUNNING|0:0||2024-06-01T11:00:01|Unknown|gpu001|step
88.0+1|88.0+1|COMPLETED|0:0||2024-06-01T11:00:00|2024-06-01T11:00:02|node006|het step
89.interactive|89.interactive|RUNNING|0:0||2024-06-01T11:00:00|Unknown|node006|interactive
90.TDB|90.TDB|PENDING|||None|None|None assigned|
91|91|TIMEOUT|0:15|TimeLimit|2024-06-01T10:00:00|2024-06-01T11:00:00|node007|é-名前 🚀
"""


def row(
    job_id: str,
    raw: str,
    state: str,
    exit_code: int | None,
    signal: int | None,
    reason: str,
    start: str,
    end: str,
    nodes: str,
    name: str,
    *,
    by: str = "",
) -> SacctRow:
    return SacctRow(job_id, raw, state, by, exit_code, signal, reason, start, end, nodes, name)


T0, T1 = "2024-06-01T12:00:00", "2024-06-01T12:10:00"
EXPECTED = [
    row("123", "123", "COMPLETED", 0, 0, "None", T0, T1, "node[001-002]", "web"),
    row("123.batch", "123.batch", "COMPLETED", 0, 0, "", T0, T1, "node001", "batch"),
    row("123.extern", "123.extern", "COMPLETED", 0, 0, "", T0, T1, "node[001-002]", "extern"),
    row("123.0", "123.0", "COMPLETED", 0, 0, "", "2024-06-01T12:00:01",
        "2024-06-01T12:09:59", "node[001-002]", "hostname"),
    row("124", "124", "CANCELLED", 0, 15, "None", T0, "2024-06-01T12:01:00", "node003",
        "a|b||c", by="1000"),
    row("125", "125", "FAILED", 3, 0, "NonZeroExitCode", T0, "2024-06-01T12:00:01", "node003",
        "fails"),
    row("126", "126", "FAILED", 0, 9, "JobLaunchFailure", T0, T0, "node003", "killed"),
    row("130_4", "134", "RUNNING", 0, 0, "None", T0, "Unknown", "gpu017", "array task"),
    row("130_4.batch", "134.batch", "RUNNING", 0, 0, "", T0, "Unknown", "gpu017", "batch"),
    row("130_[5-9%2]", "130", "PENDING", 0, 0, "JobArrayTaskLimit", "Unknown", "Unknown",
        "None assigned", "array rest"),
    row("131_[1,3,5,7...]", "131", "PENDING", 0, 0, "None", "Unknown", "Unknown",
        "None assigned", "cut range"),
    row("77+0", "77", "RUNNING", 0, 0, "None", "2024-06-01T11:00:00", "Unknown", "node005",
        "het"),
    row("77+1", "78", "RUNNING", 0, 0, "None", "2024-06-01T11:00:00", "Unknown",
        "gpu[001,003]", "het"),
    row("77+1.0", "78.0", "RUNNING", 0, 0, "", "2024-06-01T11:00:01", "Unknown", "gpu001",
        "step"),
    row("88.0+1", "88.0+1", "COMPLETED", 0, 0, "", "2024-06-01T11:00:00",
        "2024-06-01T11:00:02", "node006", "het step"),
    row("89.interactive", "89.interactive", "RUNNING", 0, 0, "", "2024-06-01T11:00:00",
        "Unknown", "node006", "interactive"),
    row("90.TDB", "90.TDB", "PENDING", None, None, "", "None", "None", "None assigned", ""),
    row("91", "91", "TIMEOUT", 0, 15, "TimeLimit", "2024-06-01T10:00:00", "2024-06-01T11:00:00",
        "node007", "é-名前 🚀"),
]  # fmt: skip


def test_format_puts_the_name_last() -> None:
    fields = SACCT_FORMAT.split(",")
    assert fields[0] == "JobID"
    assert fields[-1] == "JobName"
    assert len(fields) == len(SacctRow.__struct_fields__) - 2  # State and ExitCode are split


def test_parses_real_looking_output(sacct_parser: SacctParser) -> None:
    assert sacct_parser(OUTPUT) == EXPECTED


def test_steps_name_their_step() -> None:
    assert [r.step for r in EXPECTED[:4]] == ["", "batch", "extern", "0"]
    assert [r.step for r in EXPECTED[13:17]] == ["0", "0+1", "interactive", "TDB"]


def test_without_trailing_newline(sacct_parser: SacctParser) -> None:
    assert sacct_parser(OUTPUT.rstrip("\n")) == EXPECTED


@pytest.mark.parametrize("text", ["", "\n", "\n\n\n"])
def test_empty_output(sacct_parser: SacctParser, text: str) -> None:
    assert sacct_parser(text) == []


def test_skips_empty_lines(sacct_parser: SacctParser) -> None:
    assert sacct_parser("\n" + "\n\n".join(OUTPUT.splitlines()) + "\n\n") == EXPECTED


def test_strips_nothing(sacct_parser: SacctParser) -> None:
    (parsed,) = sacct_parser("5|5|PENDING|| None | Unknown|Unknown |\tn1 | name\r\n")
    assert parsed == row("5", "5", "PENDING", None, None, " None ", " Unknown", "Unknown ",
                         "\tn1 ", " name\r")  # fmt: skip


def test_the_synthetic_fixture(sacct_parser: SacctParser) -> None:
    rows = sacct_parser((DATA / "sacct.synthetic.txt").read_text())
    assert [(r.job_id, r.job_id_raw, r.state, r.cancelled_by) for r in rows][2:6] == [
        ("4004_[8-15%2]", "4004", "PENDING", ""),
        ("4004_7", "4010", "RUNNING", ""),
        ("4005+0", "4005", "RUNNING", ""),
        ("4005+1", "4006", "RUNNING", ""),
    ]
    assert rows[8].cancelled_by == "1000"
    assert [(r.exit_code, r.signal) for r in rows[6:10]] == [(3, 0), (0, 9), (0, 15), (0, 15)]


@pytest.mark.parametrize(
    "name", ["é-latin1", "Ωmega-ucs2", "🚀-ucs4", "|", "||||||||||", "a|b|c|d|e|f|g|h|i|j"]
)
def test_names_of_any_width_and_with_bars(sacct_parser: SacctParser, name: str) -> None:
    # Exercises the one-, two- and four-byte str layouts of the compiled twin.
    text = f"1|1|RUNNING|0:0|None|N|N|n1|{name}\n2|2|CANCELLED by 7|0:9|None|N|N||{name}{name}\n"
    assert [(r.name, r.cancelled_by) for r in sacct_parser(text)] == [
        (name, ""),
        (name + name, "7"),
    ]


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("4000001|4000001|COMPLETED|0:0|None|N|N|node001", WHAT_SACCT_FIELDS),
        ("4000001", WHAT_SACCT_FIELDS),
        ("   ", WHAT_SACCT_FIELDS),
        ("|1|COMPLETED|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("1||COMPLETED|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("job|1|COMPLETED|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        (" 12|12|COMPLETED|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12|12 |COMPLETED|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12_|12|COMPLETED|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12_[]|12|PENDING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12_[1-3|12|PENDING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12_[1-3]x|12|PENDING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12+|12|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12+1+2|12|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12_3+1|12|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12.|12.|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12.bat|12.bat|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12.batchx|12.batch|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12.0+|12.0+|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12.0.1|12.0.1|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12.tdb|12.tdb|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("12_4|12_4|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),  # JobIDRaw is digits
        ("12+1|12+1|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),
        ("١٢٣|123|RUNNING|0:0|None|N|N|n1|name", WHAT_SACCT_JOB_ID),  # not ASCII digits
        ("12|12|completed|0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12||0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12|COMPLETED |0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12|CANCELLED by|0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12|CANCELLED by |0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12|CANCELLED by root|0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12|CANCELLED  by 0|0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12|CANCELLED by 0 |0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12|ÉTAT|0:0|None|N|N|n1|name", WHAT_SACCT_STATE),
        ("12|12|COMPLETED|0|None|N|N|n1|name", WHAT_SACCT_EXIT_CODE),
        ("12|12|COMPLETED|:0|None|N|N|n1|name", WHAT_SACCT_EXIT_CODE),
        ("12|12|COMPLETED|0:|None|N|N|n1|name", WHAT_SACCT_EXIT_CODE),
        ("12|12|COMPLETED|-1:0|None|N|N|n1|name", WHAT_SACCT_EXIT_CODE),
        ("12|12|COMPLETED|0:0:0|None|N|N|n1|name", WHAT_SACCT_EXIT_CODE),
        ("12|12|COMPLETED| 0:0|None|N|N|n1|name", WHAT_SACCT_EXIT_CODE),
        ("12|12|COMPLETED|1234567890:0|None|N|N|n1|name", WHAT_SACCT_EXIT_CODE),
        ("12|12|COMPLETED|0:1234567890|None|N|N|n1|name", WHAT_SACCT_EXIT_CODE),
    ],
)
def test_errors_name_the_line(sacct_parser: SacctParser, line: str, what: str) -> None:
    good = "1|1|RUNNING|0:0|None|N|N|n1|ok"
    with pytest.raises(ParseError) as info:
        sacct_parser(f"{good}\n\n{line}\n{good}\n")
    assert (info.value.what, info.value.line, info.value.lineno) == (what, line, 3)
    assert str(info.value) == f"cannot parse {what} line 3: {line!r}"


def test_the_first_failing_check_names_the_line(sacct_parser: SacctParser) -> None:
    with pytest.raises(ParseError) as info:
        sacct_parser("x|1|bad|bad|r|s|e|n|name")
    assert info.value.what == WHAT_SACCT_JOB_ID
    with pytest.raises(ParseError) as info:
        sacct_parser("1|1|bad|bad|r|s|e|n|name")
    assert info.value.what == WHAT_SACCT_STATE


def test_largest_exit_code_numbers(sacct_parser: SacctParser) -> None:
    (parsed,) = sacct_parser("1|1|FAILED|999999999:000000007|None|N|N|n1|x")
    assert (parsed.exit_code, parsed.signal) == (999_999_999, 7)


def test_error_on_the_last_line_without_newline(sacct_parser: SacctParser) -> None:
    with pytest.raises(ParseError, match=r"line 2: '12\|12\|RUNNING'$"):
        sacct_parser("1|1|RUNNING|0:0|None|N|N|n1|ok\n12|12|RUNNING")


# --- hypothesis: the compiled twin is the reference, only faster ---------------------------

_NOT_NEWLINE = st.characters(blacklist_characters="\n")
_FIELD = st.text(st.characters(blacklist_characters="|\n"), max_size=12)
_DIGITS = st.integers(0, 10**9).map(str)
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"

jobs = st.one_of(
    _DIGITS,
    st.builds("{}_{}".format, _DIGITS, _DIGITS),
    st.builds("{}_[{}]".format, _DIGITS, st.text("0123456789,:%-.", min_size=1, max_size=12)),
    st.builds("{}+{}".format, _DIGITS, _DIGITS),
)
steps = st.one_of(
    st.just(""),
    st.builds(
        "{}{}".format,
        st.one_of(
            _DIGITS.map(".{}".format),
            st.sampled_from([".batch", ".extern", ".interactive", ".TDB"]),
        ),
        st.one_of(st.just(""), _DIGITS.map("+{}".format)),
    ),
)
states = st.one_of(
    st.sampled_from(["PENDING", "RUNNING", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT"]),
    st.text(_UPPER, min_size=1, max_size=12),
)
cancellers = st.one_of(st.just(""), _DIGITS)
exit_numbers = st.one_of(st.integers(0, 255), st.integers(0, 999_999_999))
times = st.one_of(
    st.sampled_from(["Unknown", "None"]),
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
def rows(draw: st.DrawFn) -> SacctRow:
    step = draw(steps)
    known = draw(st.booleans())
    return SacctRow(
        draw(jobs) + step,
        draw(_DIGITS) + step,
        draw(states),
        draw(cancellers),
        draw(exit_numbers) if known else None,
        draw(exit_numbers) if known else None,
        draw(_FIELD),
        draw(times),
        draw(times),
        draw(_FIELD),
        draw(names),
    )


def line_of(r: SacctRow) -> str:
    state = f"{r.state} by {r.cancelled_by}" if r.cancelled_by else r.state
    exit_code = "" if r.exit_code is None else f"{r.exit_code}:{r.signal}"
    fields = [r.job_id, r.job_id_raw, state, exit_code, r.reason, r.start, r.end, r.nodes]
    return "|".join([*fields, r.name])


@st.composite
def near_misses(draw: st.DrawFn, valid: st.SearchStrategy[str], pieces: str) -> str:
    """A valid value with a few characters deleted, replaced or inserted."""
    value = draw(valid)
    for _ in range(draw(st.integers(1, 2))):
        start = draw(st.integers(0, len(value)))
        end = draw(st.integers(start, min(len(value), start + 3)))
        value = value[:start] + draw(st.text(pieces, max_size=2)) + value[end:]
    return value


near_job_ids = near_misses(
    st.builds("{}{}".format, jobs, steps), "0123456789_[]+.,:%- xbatchexternTDB\u0661"
)
near_raw_ids = near_misses(st.builds("{}{}".format, _DIGITS, steps), "0123456789.+_ batchTDB")
near_states = near_misses(
    st.builds("{}{}".format, states, cancellers.map(lambda u: f" by {u}" if u else "")),
    "AZ_a -É0by",
)
near_exit_codes = near_misses(
    st.builds("{}:{}".format, exit_numbers, exit_numbers), "0123456789: -x"
)


@st.composite
def bad_lines(draw: st.DrawFn) -> str:
    line = line_of(draw(rows()))
    how = draw(st.sampled_from(["truncate", "garbage", "mutate"]))
    if how == "truncate":
        return line[: draw(st.integers(0, len(line)))]
    if how == "garbage":
        return draw(st.text(st.one_of(_NOT_NEWLINE, st.just("|")), max_size=80))
    fields = line.split("|", 8)
    for i, near in enumerate([near_job_ids, near_raw_ids, near_states, near_exit_codes]):
        fields[i] = draw(st.one_of(st.just(fields[i]), near, _FIELD))
    return "|".join(fields)


outputs = st.one_of(
    st.lists(st.one_of(rows().map(line_of), bad_lines(), st.just("")), max_size=12).map("\n".join),
    st.text(st.sampled_from("0123456789_[]+.,-:%| ABYZ_az\nbatchTDé🚀"), max_size=100),
    st.text(),
)


def outcome(parse: SacctParser, text: str) -> object:
    try:
        return ("rows", parse(text))
    except ParseError as exc:
        return ("error", type(exc), str(exc), exc.what, exc.line, exc.lineno)


@settings(max_examples=500)
@given(text=outputs)
@example(text="")
@example(text=OUTPUT)
@example(text="12_[1-3]|12|PENDING|||||||")
@example(text="1|1|CANCELLED by 00|00:00|||||")
def test_compiled_twin_equals_the_reference(compiled_sacct_parser: SacctParser, text: str) -> None:
    assert outcome(compiled_sacct_parser, text) == outcome(_sacct_py.parse_sacct, text)


@settings(max_examples=1000)
@given(
    job_id=st.one_of(st.builds("{}{}".format, jobs, steps), near_job_ids, _FIELD),
    raw_id=st.one_of(st.builds("{}{}".format, _DIGITS, steps), near_raw_ids, _FIELD),
    state=st.one_of(states, near_states, _FIELD),
    exit_code=st.one_of(st.just(""), near_exit_codes, _FIELD),
)
def test_twins_agree_on_ids_states_and_exit_codes(
    compiled_sacct_parser: SacctParser, job_id: str, raw_id: str, state: str, exit_code: str
) -> None:
    text = f"1|1|RUNNING|0:0|None|N|N|n1|first\n{job_id}|{raw_id}|{state}|{exit_code}|r|s|e|n|x"
    assert outcome(compiled_sacct_parser, text) == outcome(_sacct_py.parse_sacct, text)


@given(lines=st.lists(rows(), max_size=20), trailing=st.booleans())
def test_valid_rows_round_trip(
    sacct_parser: SacctParser, lines: list[SacctRow], trailing: bool
) -> None:
    text = "\n".join(line_of(r) for r in lines) + ("\n" if trailing else "")
    assert sacct_parser(text) == lines


# --- which twin mobius._fast picked ----------------------------------------------------------


def _selected(env: dict[str, str]) -> str:
    code = "import mobius._fast as f; print(f.COMPILED, f.parse_sacct.__module__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_selector_is_consistent() -> None:
    compiled = mobius._fast.parse_sacct is not _sacct_py.parse_sacct
    assert mobius._fast.COMPILED is compiled


def test_selector_honours_no_extensions() -> None:
    assert _selected({"MOBIUS_NO_EXTENSIONS": "1"}) == "False mobius._fast._sacct_py"


@pytest.mark.skipif(not extensions_required(), reason="MOBIUS_REQUIRE_EXTENSIONS is not set")
def test_compiled_twin_really_loaded() -> None:
    module = compiled_module("_sacct")
    assert module.__file__ is not None
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert _selected({"MOBIUS_NO_EXTENSIONS": ""}) == "True mobius._fast._sacct"
    if os.environ.get("MOBIUS_NO_EXTENSIONS", "") in ("", "0"):
        assert mobius._fast.COMPILED
        assert mobius._fast.parse_sacct is module.parse_sacct
