"""Diff two squeue snapshots: the readable reference of ``_diff.pyx``.

The status poller keeps the rows of the previous tick keyed by job name (Mobius names each job
after its pod, ``mobius-<uid>``), and only the pods whose row changed need a new verdict. This
twin defines the behaviour; the compiled one must return an equal snapshot and the same names
in the same order (the tests check it with hypothesis).

Rules:

- the new snapshot maps each job name to its row; when a name appears on several rows (the
  components ``77+0``, ``77+1`` of a heterogeneous job share one name) the last row wins, and
  the name keeps the position of its first row;
- a name has changed when it is new, or when its row differs from the previous one in any field
  (job id, state, reason, start, end, nodes);
- the names that disappeared from squeue follow, in the order of the previous snapshot.
"""

from __future__ import annotations

from mobius._fast._rows import SqueueRow

__all__ = ["diff_rows"]


def diff_rows(
    previous: dict[str, SqueueRow], rows: list[SqueueRow]
) -> tuple[dict[str, SqueueRow], list[str]]:
    """``(snapshot, changed)``: the rows keyed by job name, and the names that changed or left."""
    snapshot = {row.name: row for row in rows}
    changed = [name for name, row in snapshot.items() if previous.get(name) != row]
    changed.extend(name for name in previous if name not in snapshot)
    return snapshot, changed
