"""What the squeue and sacct parsers produce, shared by their twins.

The status poller runs ``squeue --noheader --format=SQUEUE_FORMAT`` once per tick for every job
of the allocation, and ``sacct --noheader --parsable2 --format=SACCT_FORMAT`` for the jobs that
left squeue. The parser twins (``_squeue_py.py`` and ``_sacct_py.py``, the readable references,
``_squeue.pyx`` and ``_sacct.pyx``, their compiled copies) import the Structs and the error
wording from here, so that they return equal rows and raise equal errors. The decoders of
``--json`` output (``_slurm_json.py``) return these rows too.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "SACCT_FORMAT",
    "SQUEUE_FORMAT",
    "WHAT_FIELDS",
    "WHAT_JOB_ID",
    "WHAT_SACCT_EXIT_CODE",
    "WHAT_SACCT_FIELDS",
    "WHAT_SACCT_JOB_ID",
    "WHAT_SACCT_STATE",
    "WHAT_STATE",
    "SacctRow",
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


SACCT_FORMAT = "JobID,JobIDRaw,State,ExitCode,Reason,Start,End,NodeList,JobName"
"""The ``--format`` the poller passes to sacct (with ``--noheader --parsable2``).

``--parsable2`` separates the fields with ``|`` and, like squeue, escapes nothing; so, as in
``SQUEUE_FORMAT``, the one field a user chooses, the job name, is last: a line is split at its
first eight ``|`` and the rest, ``|`` included, is the name. The other fields cannot contain
``|`` or a newline.

Fields, in order, as sacct prints them:

- ``JobID``: ``123``; ``123_4`` (array task), ``123_[5-9%2]`` (array tasks not started yet;
  a long range is cut, ``123_[1,3,5,...]``), ``77+1`` (het job component); a step adds ``.batch``, ``.extern``, ``.interactive``,
  ``.TDB`` (sic: a step not created yet) or ``.<n>``, and ``+<n>`` for a het step component,
  e.g. ``123_4.0``, ``77+1.batch``, ``88.0+1``;
- ``JobIDRaw``: the job's own id, digits, with the same step suffix (``125.batch``);
- ``State``: ``COMPLETED``, ``FAILED``, ...; ``CANCELLED by <uid>`` when someone cancelled it;
- ``ExitCode``: ``<exit status>:<signal>``, e.g. ``0:0``, ``3:0``, ``0:9``; empty while unknown;
- ``Reason``: the last reason the job waited (``None``, ``Priority``, ...);
- ``Start`` / ``End``: ``2024-06-01T12:00:00``, or ``Unknown`` / ``None`` when not (yet) set;
- ``NodeList``: ``n1``, ``node[001-004]``, ``None assigned``;
- ``JobName``: anything but a newline (a step's name for a step: ``batch``, ``extern``).
"""

WHAT_SACCT_FIELDS = "sacct output (expected 9 '|'-separated fields)"
WHAT_SACCT_JOB_ID = "sacct output (bad job id)"
WHAT_SACCT_STATE = "sacct output (bad job state)"
WHAT_SACCT_EXIT_CODE = "sacct output (bad exit code)"


class SacctRow(msgspec.Struct, frozen=True, gc=False):
    """One line of sacct output: a job (allocation) or one of its steps.

    Strings are kept as sacct printed them (nothing stripped), except for the two fields made
    of parts: ``State`` (``CANCELLED by 1000`` is ``state="CANCELLED", cancelled_by="1000"``) and
    ``ExitCode`` (``3:0`` is ``exit_code=3, signal=0``; an empty field is None, None).
    """

    job_id: str
    """``JobID``: ``123``, ``123_4``, ``123_[5-9]``, ``77+1``, ``123.batch``, ``123_4.0``..."""
    job_id_raw: str
    """``JobIDRaw``: ``125``, ``125.batch``: what sbatch answered, plus the step."""
    state: str
    cancelled_by: str
    """The uid sacct names in ``CANCELLED by <uid>``, else ``""``."""
    exit_code: int | None
    signal: int | None
    reason: str
    start: str
    end: str
    nodes: str
    name: str

    @property
    def step(self) -> str:
        """The step part of the id (``batch``, ``0``, ``0+1``), ``""`` for the job itself."""
        return self.job_id_raw.partition(".")[2]
