"""The compiled hot path: what the status poller runs over big Slurm outputs every tick.

The squeue parser (``_squeue``) and the snapshot differ (``_diff``), which tells the poller
which jobs changed since its last tick.

Every ``_x.pyx`` here (typed Cython) has a readable pure-Python twin ``_x_py.py`` that defines
its behaviour; the Structs and errors both twins use live in plain ``.py`` modules (``_rows``).
This module picks the compiled twin, unless the environment sets ``MOBIUS_NO_EXTENSIONS=1`` or
it was not built (then the Python twin, same results, slower). ``COMPILED`` says which one is in
use. Type checkers always see the Python twin, so the extensions need no stubs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mobius._fast._diff_py import diff_rows
from mobius._fast._rows import SQUEUE_FORMAT, SqueueRow
from mobius._fast._squeue_py import parse_squeue

__all__ = ["COMPILED", "SQUEUE_FORMAT", "SqueueRow", "diff_rows", "parse_squeue"]

COMPILED = False
"""True when the compiled twins are in use."""

if not TYPE_CHECKING and os.environ.get("MOBIUS_NO_EXTENSIONS", "") in ("", "0"):
    try:
        from mobius._fast._diff import diff_rows
        from mobius._fast._squeue import parse_squeue
    except ImportError:  # not built: keep the Python twin
        pass
    else:
        COMPILED = True
