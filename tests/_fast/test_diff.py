"""``diff_rows``: both twins on examples, and against each other (hypothesis)."""

from __future__ import annotations

import importlib.machinery
import os

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mobius._fast
from mobius._fast import SqueueRow, _diff_py, _squeue_py

from .conftest import Differ, compiled_module, extensions_required
from .test_squeue import rows as any_rows


def row(name: str, state: str = "PENDING", job_id: str = "1", **fields: str) -> SqueueRow:
    values = {"reason": "Priority", "start": "N/A", "end": "N/A", "nodes": ""} | fields
    return SqueueRow(job_id, state, values["reason"], values["start"], values["end"],
                     values["nodes"], name)


def test_first_snapshot_lists_every_name(differ: Differ) -> None:
    rows = [row("a"), row("b"), row("c")]
    snapshot, changed = differ({}, rows)
    assert snapshot == {"a": rows[0], "b": rows[1], "c": rows[2]}
    assert changed == ["a", "b", "c"]


def test_unchanged_rows_are_not_listed(differ: Differ) -> None:
    previous, _ = differ({}, [row("a"), row("b")])
    # Equal rows, but other objects (each squeue output is parsed afresh).
    snapshot, changed = differ(previous, [row("a"), row("b")])
    assert changed == []
    assert snapshot == previous


@pytest.mark.parametrize(
    "field", ["job_id", "state", "reason", "start", "end", "nodes"]
)
def test_any_field_change_is_listed(differ: Differ, field: str) -> None:
    before = row("b")
    after = msgspec.structs.replace(before, **{field: "X_1"})
    previous, _ = differ({}, [row("a"), before, row("c")])
    snapshot, changed = differ(previous, [row("a"), after, row("c")])
    assert changed == ["b"]
    assert snapshot["b"] is after


def test_new_then_vanished_names_in_order(differ: Differ) -> None:
    previous, _ = differ({}, [row("a"), row("b"), row("c"), row("d")])
    snapshot, changed = differ(previous, [row("e"), row("c"), row("a", "RUNNING")])
    assert list(snapshot) == ["e", "c", "a"]
    assert changed == ["e", "a", "b", "d"]


def test_repeated_name_last_row_wins_first_position_kept(differ: Differ) -> None:
    # The components of a heterogeneous job share the job's name.
    rows = [row("het", "RUNNING", "77+0"), row("x"), row("het", "PENDING", "77+1")]
    snapshot, changed = differ({}, rows)
    assert list(snapshot) == ["het", "x"]
    assert snapshot["het"] is rows[2]
    assert changed == ["het", "x"]


def test_empty_output_means_everything_left(differ: Differ) -> None:
    previous, _ = differ({}, [row("a"), row("b")])
    assert differ(previous, []) == ({}, ["a", "b"])
    assert differ({}, []) == ({}, [])


def test_rows_of_a_subclass_take_the_generic_path(differ: Differ) -> None:
    class Row(SqueueRow):
        pass

    plain = row("a")
    other = Row(*(getattr(plain, f) for f in SqueueRow.__struct_fields__))
    previous, _ = differ({}, [plain])
    assert differ(previous, [other])[1] == _diff_py.diff_rows(previous, [other])[1]


def test_parsed_output_diffs_against_itself(differ: Differ) -> None:
    text = "".join(
        f"{100 + i}|{'RUNNING' if i % 2 else 'PENDING'}|None|N/A|N/A|n{i % 3}|mobius-{i}\n"
        for i in range(50)
    )
    previous, changed = differ({}, _squeue_py.parse_squeue(text))
    assert len(changed) == 50
    assert differ(previous, mobius._fast.parse_squeue(text))[1] == []


# --- hypothesis: the compiled twin is the reference, only faster ---------------------------

_NAMES = st.sampled_from([f"mobius-{i}" for i in range(8)])


@st.composite
def named_rows(draw: st.DrawFn) -> SqueueRow:
    """Rows with few distinct names and values, so that names repeat and rows often match."""
    base = draw(st.one_of(any_rows(), st.builds(row, _NAMES)))
    return msgspec.structs.replace(
        base,
        name=draw(_NAMES),
        state=draw(st.one_of(st.sampled_from(["PENDING", "RUNNING"]), st.just(base.state))),
    )


snapshots = st.lists(named_rows(), max_size=12)


@settings(max_examples=500)
@given(before=snapshots, after=snapshots, start_empty=st.booleans())
def test_compiled_twin_equals_the_reference(
    compiled_differ: Differ, before: list[SqueueRow], after: list[SqueueRow], start_empty: bool
) -> None:
    previous = {} if start_empty else _diff_py.diff_rows({}, before)[0]
    assert compiled_differ({}, before) == _diff_py.diff_rows({}, before)
    assert compiled_differ(previous, after) == _diff_py.diff_rows(previous, after)


@given(before=snapshots, after=snapshots)
def test_changed_is_what_a_dict_comparison_says(
    differ: Differ, before: list[SqueueRow], after: list[SqueueRow]
) -> None:
    previous = {r.name: r for r in before}
    snapshot, changed = differ(previous, after)
    assert snapshot == {r.name: r for r in after}
    assert set(changed) == {
        name for name in snapshot.keys() | previous.keys()
        if snapshot.get(name) != previous.get(name)
    }
    assert len(changed) == len(set(changed))


def test_selector_picks_the_compiled_differ_with_the_parser() -> None:
    compiled = mobius._fast.parse_squeue is not _squeue_py.parse_squeue
    assert (mobius._fast.diff_rows is not _diff_py.diff_rows) is compiled


@pytest.mark.skipif(not extensions_required(), reason="MOBIUS_REQUIRE_EXTENSIONS is not set")
def test_compiled_differ_really_loaded() -> None:
    module = compiled_module("_diff")
    assert module.__file__ is not None
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    if os.environ.get("MOBIUS_NO_EXTENSIONS", "") in ("", "0"):
        assert mobius._fast.diff_rows is module.diff_rows
