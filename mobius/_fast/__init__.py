"""The compiled hot path: what the status poller runs over big Slurm outputs every tick.

The squeue parser (``_squeue``), the snapshot differ (``_diff``), which tells the poller which
jobs changed since its last tick, and the sacct parser (``_sacct``), which reads how jobs that
left squeue ended. The decoders of ``squeue --json`` and ``sacct --json`` (``_slurm_json``)
return the same rows; they are msgspec, already compiled, with a readable stdlib twin
(``_slurm_json_py``) that the tests hold them to.

Every ``_x.pyx`` here (typed Cython) has a readable pure-Python twin ``_x_py.py`` that defines
its behaviour; the Structs and errors both twins use live in plain ``.py`` modules (``_rows``).
This module picks the compiled twins, unless the environment sets ``MOBIUS_NO_EXTENSIONS=1`` or
one of them was not built (then all the Python twins, same results, slower). ``COMPILED`` says
which ones are in use. Type checkers always see the Python twins, so the extensions need no
stubs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mobius._fast._diff_py import diff_rows
from mobius._fast._rows import SACCT_FORMAT, SQUEUE_FORMAT, SacctRow, SqueueRow
from mobius._fast._sacct_py import parse_sacct
from mobius._fast._slurm_jobs import SlurmJob, SlurmJobs, SlurmMeta
from mobius._fast._slurm_json import (
    decode_sacct_json,
    decode_squeue_json,
    parse_sacct_json,
    parse_squeue_json,
)
from mobius._fast._squeue_py import parse_squeue

__all__ = [
    "COMPILED",
    "SACCT_FORMAT",
    "SQUEUE_FORMAT",
    "SacctRow",
    "SlurmJob",
    "SlurmJobs",
    "SlurmMeta",
    "SqueueRow",
    "decode_sacct_json",
    "decode_squeue_json",
    "diff_rows",
    "parse_sacct",
    "parse_sacct_json",
    "parse_squeue",
    "parse_squeue_json",
]

COMPILED = False
"""True when the compiled twins are in use."""

if not TYPE_CHECKING and os.environ.get("MOBIUS_NO_EXTENSIONS", "") in ("", "0"):
    try:  # all of them or none: a half-built tree must not mix twins silently
        from mobius._fast import _diff, _sacct, _squeue
    except ImportError:  # not built: keep the Python twins
        pass
    else:
        diff_rows = _diff.diff_rows
        parse_sacct = _sacct.parse_sacct
        parse_squeue = _squeue.parse_squeue
        COMPILED = True
