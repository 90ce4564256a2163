"""Parse ``sacct --noheader --parsable2 --format=SACCT_FORMAT`` output: the readable reference.

When jobs leave squeue the poller asks accounting how they ended, for all of them in one call,
so a busy allocation can hand it thousands of lines at once; ``_sacct.pyx`` holds a compiled
twin of this module and ``mobius._fast`` picks one. This twin defines the behaviour: the
compiled one must return equal rows and raise equal errors (the tests check it with hypothesis).

Rules:

- lines are separated by ``\\n``; empty lines (and so a trailing newline) are skipped;
- a line is split at its first eight ``|``: everything after the eighth is the job name, which
  may contain ``|`` itself (see ``SACCT_FORMAT``); nothing is stripped;
- the job id (``JobID``) must look like one: digits, optionally ``_<digits>`` (array task),
  ``_[<range>]`` (array tasks, range made of digits and ``,-:%.``: sacct cuts a long range
  with ``...``) or ``+<digits>`` (het job component), then optionally a step: ``.`` followed by digits, ``batch``, ``extern``,
  ``interactive`` or ``TDB``, and optionally ``+<digits>`` (het step component);
- the raw job id (``JobIDRaw``) must be digits with the same optional step;
- the state must be ``A-Z`` and ``_`` (at least one), optionally followed by `` by <digits>``
  (``CANCELLED by 1000``), which becomes ``cancelled_by``;
- the exit code must be empty (None, None) or ``<digits>:<digits>``, each number of at most
  nine digits (Slurm's are below 256);
- otherwise ParseError(what, line, lineno), lineno 1-based, counting empty lines too; the first
  failing check of the line names it, in the order: fields, job ids, state, exit code.
"""

from __future__ import annotations

import re

from mobius._fast._rows import (
    WHAT_SACCT_EXIT_CODE,
    WHAT_SACCT_FIELDS,
    WHAT_SACCT_JOB_ID,
    WHAT_SACCT_STATE,
    SacctRow,
)
from mobius.errors import ParseError

__all__ = ["parse_sacct"]

# [0-9], not \d: \d would accept every Unicode digit.
_STEP = r"(?:\.(?:[0-9]+|batch|extern|interactive|TDB)(?:\+[0-9]+)?)?"
_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+|_\[[0-9,:%.-]+\]|\+[0-9]+)?" + _STEP)
_JOB_ID_RAW = re.compile(r"[0-9]+" + _STEP)
_STATE = re.compile(r"([A-Z_]+)(?: by ([0-9]+))?")
_EXIT_CODE = re.compile(r"([0-9]{1,9}):([0-9]{1,9})")


def parse_sacct(text: str) -> list[SacctRow]:
    """The rows of sacct output, in output order."""
    rows: list[SacctRow] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        fields = line.split("|", 8)
        if len(fields) < 9:
            raise ParseError(WHAT_SACCT_FIELDS, line, lineno)
        job_id, job_id_raw, state_field, exit_field, reason, start, end, nodes, name = fields
        if _JOB_ID.fullmatch(job_id) is None or _JOB_ID_RAW.fullmatch(job_id_raw) is None:
            raise ParseError(WHAT_SACCT_JOB_ID, line, lineno)
        state = _STATE.fullmatch(state_field)
        if state is None:
            raise ParseError(WHAT_SACCT_STATE, line, lineno)
        status: int | None = None
        signal: int | None = None
        if exit_field:
            exit_code = _EXIT_CODE.fullmatch(exit_field)
            if exit_code is None:
                raise ParseError(WHAT_SACCT_EXIT_CODE, line, lineno)
            status, signal = int(exit_code[1]), int(exit_code[2])
        rows.append(
            SacctRow(
                job_id,
                job_id_raw,
                state[1],
                state[2] or "",
                status,
                signal,
                reason,
                start,
                end,
                nodes,
                name,
            )
        )
    return rows
