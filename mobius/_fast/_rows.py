"""What the squeue parsers produce, shared by both twins.

The status poller runs ``squeue --noheader --format=SQUEUE_FORMAT`` once per tick for every job
of the allocation. Both parser twins (``_squeue_py.py``, the readable reference, and
``_squeue.pyx``, its compiled copy) import the Struct and the error wording from here, so that
they return equal rows and raise equal errors.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "SQUEUE_FORMAT",
    "WHAT_FIELDS",
    "WHAT_JOB_ID",
    "WHAT_STATE",
    "SqueueRow",
]

SQUEUE_FORMAT = "%A|%T|%r|%S|%e|%N|%j"
"""The ``--format`` the poller passes to squeue (together with ``--noheader``).

Fields, in order: job id (``%A``), state in long form (``%T``, e.g. ``PENDING``, ``CANCELLED``),
reason (``%r``, e.g. ``None``, ``Priority``, ``(null)``,
``ReqNodeNotAvail, UnavailableNodes:n1``), start time (``%S``), end time (``%e``; both may be
``N/A``), node list (``%N``, empty while pending) and job name (``%j``).

Why the job name is last: squeue does not escape its separator, and of all these fields only the
name is chosen by the user, so only the name may contain ``|``. Putting it last makes a line
unambiguous: it is split at its first six ``|`` and everything after the sixth one, ``|``
included, is the name. No other field can contain ``|`` (or a newline).
"""

# The ``what`` of the ParseError each check raises; with the 1-based line number and the line.
WHAT_FIELDS = "squeue output (expected 7 '|'-separated fields)"
WHAT_JOB_ID = "squeue output (bad job id)"
WHAT_STATE = "squeue output (bad job state)"


class SqueueRow(msgspec.Struct, frozen=True, gc=False):
    """One line of squeue output, every field as squeue printed it (nothing stripped)."""

    job_id: str
    """``123``; ``123_4`` (array task), ``123_[5-9]`` (pending array range), ``77+1`` (het job)."""
    state: str
    reason: str
    start: str
    end: str
    nodes: str
    name: str
