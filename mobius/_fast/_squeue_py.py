"""Parse ``squeue --noheader --format=SQUEUE_FORMAT`` output: the readable reference.

The status poller parses the output for every job of the allocation on every tick, so
``_squeue.pyx`` holds a compiled twin of this module; ``mobius._fast`` picks one. This twin
defines the behaviour: the compiled one must return equal rows and raise equal errors (the
tests check it with hypothesis).

Rules:

- lines are separated by ``\\n``; empty lines (and so a trailing newline) are skipped;
- a line is split at its first six ``|``: everything after the sixth is the job name, which may
  contain ``|`` itself (see ``SQUEUE_FORMAT``); nothing is stripped;
- the job id must look like a Slurm job id: digits, optionally followed by ``_<digits>``
  (array task), ``_[<range>]`` (pending array tasks, range made of digits and ``,-:%``) or
  ``+<digits>`` (heterogeneous job component);
- the state must be non-empty and made of ``A-Z`` and ``_`` only;
- otherwise ParseError(what, line, lineno), lineno 1-based, counting empty lines too.
"""

from __future__ import annotations

import re

from mobius._fast._rows import WHAT_FIELDS, WHAT_JOB_ID, WHAT_STATE, SqueueRow
from mobius.errors import ParseError

__all__ = ["parse_squeue"]

# [0-9], not \d: \d would accept every Unicode digit.
_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+|_\[[0-9,:%-]+\]|\+[0-9]+)?")
_STATE = re.compile(r"[A-Z_]+")


def parse_squeue(text: str) -> list[SqueueRow]:
    """The rows of squeue output, in output order."""
    rows: list[SqueueRow] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        fields = line.split("|", 6)
        if len(fields) < 7:
            raise ParseError(WHAT_FIELDS, line, lineno)
        job_id, state, reason, start, end, nodes, name = fields
        if _JOB_ID.fullmatch(job_id) is None:
            raise ParseError(WHAT_JOB_ID, line, lineno)
        if _STATE.fullmatch(state) is None:
            raise ParseError(WHAT_STATE, line, lineno)
        rows.append(SqueueRow(job_id, state, reason, start, end, nodes, name))
    return rows
