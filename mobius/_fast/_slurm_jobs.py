"""A job as ``squeue --json`` or ``sacct --json`` describes it, the same for every Slurm version.

The JSON of Slurm changes with every release (its data_parser plugin: the OpenAPI plugin
v0.0.38 in 22.05, data_parser v0.0.39 in 23.02, v0.0.40 in 23.11, v0.0.41 in 24.05, v0.0.42 in
24.11): a job state is a string, then a list of flags; a number is a plain int, then a
``{"set", "infinite", "number"}`` object; an exit code is a wait status, then an object. Both
decoder twins (``_slurm_json.py``, msgspec, and ``_slurm_json_py.py``, its readable stdlib
reference) turn any of them into the ``SlurmJob`` here, and map it onto the rows the text
parsers return (``SqueueRow``, ``SacctRow``) exactly as squeue and sacct would have printed the
same job with the poller's formats, so that the poller can use either path.

What the two paths cannot agree on, because Slurm itself does not:

- ``sacct --json`` names who cancelled a job by user name, ``sacct`` text by uid;
- in 22.05 and 23.02, ``sacct --json`` reports every normal exit as status ``SUCCESS`` with
  return code 0 (its exit-code dumper tests ``WIFEXITED`` first), so a job that exited 3 shows
  exit code 0 there, and ``3:0`` in the text;
- times are printed in the local time zone of the process, as Slurm prints them.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Sequence

import msgspec

from mobius._fast._rows import SacctRow, SqueueRow

__all__ = [
    "INFINITE",
    "NO_VAL",
    "SlurmJob",
    "SlurmJobs",
    "SlurmMeta",
    "array_tasks",
    "exit_status",
    "sacct_row",
    "squeue_end_text",
    "squeue_row",
    "text_state",
    "time_text",
    "wait_status",
]

NO_VAL = 0xFFFFFFFE
"""Slurm's "not set" for 32-bit numbers, as a plain int in 22.05 output."""
INFINITE = 0xFFFFFFFF
"""Slurm's "unlimited" for 32-bit numbers."""

# The order in which Slurm's job_state_string() lets a state flag hide the base state: a
# RUNNING job with the COMPLETING flag prints as COMPLETING in squeue and sacct text.
_SHOWN_FLAGS = (
    "COMPLETING",
    "STAGE_OUT",
    "CONFIGURING",
    "RESIZING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "SPECIAL_EXIT",
    "STOPPED",
    "REVOKED",
    "RESV_DEL_HOLD",
    "SIGNALING",
)
_HIDDEN_FLAGS = frozenset(
    {"LAUNCH_FAILED", "UPDATE_DB", "RECONFIG_FAIL", "POWER_UP_NODE", "REQUEUE_CRON"}
)
_FLAGS = frozenset(_SHOWN_FLAGS) | _HIDDEN_FLAGS

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"  # Slurm's default ("%FT%T")
_HEX_MASK = re.compile(r"0x[0-9A-Fa-f]+")
_ARRAY_TEXT_MAX = 63  # what fits in Slurm's 64-byte buffer (SLURM_BITSTR_LEN unset)


class SlurmMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Which Slurm wrote the document (from its ``meta``); empty strings when it does not say."""

    release: str = ""
    """``22.05.8``, ``24.05.4``..."""
    data_parser: str = ""
    """``v0.0.41`` (23.02 and later); in 22.05 the OpenAPI plugin, ``openapi/v0.0.38``."""


class SlurmJob(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One job of a ``--json`` document, whatever the Slurm version that wrote it.

    Times are seconds since the epoch, None when Slurm has none (yet); numbers Slurm marks as
    not set are None.
    """

    job_id: int
    state: str
    """As the text output prints it: the base state, or the flag that hides it (COMPLETING)."""
    state_flags: tuple[str, ...] = ()
    """Everything the document says of the state: ``("RUNNING", "COMPLETING")``."""
    name: str = ""
    reason: str = ""
    """What squeue's ``%r`` prints: the state description if any, else the state reason."""
    exit_code: int | None = None
    """The exit status (0-255) of a job that exited; 0 when a signal ended it; None if unknown."""
    signal: int | None = None
    """The signal that ended the job, 0 if it exited, None if unknown."""
    array_job_id: int | None = None
    array_task_id: int | None = None
    array_tasks: str = ""
    """For a record standing for array tasks not started yet: their range (``2-5%2``)."""
    het_job_id: int | None = None
    het_job_offset: int | None = None
    submit: int | None = None
    start: int | None = None
    end: int | None = None
    nodes: str = ""
    time_limit: int | None = None
    """Minutes; None when unlimited (see ``unlimited``) or not set."""
    unlimited: bool = False
    user: str = ""
    partition: str = ""
    comment: str = ""
    cancelled_by: str = ""
    """sacct only: the user who cancelled a CANCELLED job, if Slurm recorded one."""

    @property
    def id_text(self) -> str:
        """The id as squeue ``%i`` and sacct ``JobID`` print it: ``123_4``, ``77+1``..."""
        if self.array_tasks:
            return f"{self.array_job_id}_[{self.array_tasks}]"
        if self.array_task_id is not None:
            return f"{self.array_job_id}_{self.array_task_id}"
        if self.het_job_id:
            return f"{self.het_job_id}+{self.het_job_offset}"
        return str(self.job_id)


class SlurmJobs(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded ``--json`` document: its jobs, who wrote it, and the errors it reports."""

    jobs: list[SlurmJob]
    meta: SlurmMeta = SlurmMeta()
    errors: tuple[str, ...] = ()


def text_state(flags: Sequence[str]) -> str:
    """The state text output prints for these state flags (Slurm's job_state_string())."""
    if len(flags) == 1:
        return flags[0]
    for flag in _SHOWN_FLAGS:
        if flag in flags:
            return flag
    for state in flags:
        if state not in _FLAGS:
            return state
    return flags[0] if flags else ""


def wait_status(raw: int) -> tuple[int | None, int | None]:
    """``(exit code, signal)`` of a wait status as Slurm keeps it; (None, None) if not set."""
    if raw < 0 or raw >= NO_VAL:
        return None, None
    signal = raw & 0x7F
    if signal == 0:  # WIFEXITED
        return (raw >> 8) & 0xFF, 0
    if signal != 0x7F:  # WIFSIGNALED
        return 0, signal
    return None, None  # stopped: not an end


def exit_status(
    status: str, return_code: int | None, signal: int | None
) -> tuple[int | None, int | None]:
    """``(exit code, signal)`` from the exit-code object of 22.05 and later.

    ``status`` is PENDING, SUCCESS, ERROR, SIGNALED, CORE_DUMPED or INVALID.
    """
    if status == "SUCCESS":
        return (return_code or 0), 0
    if status == "ERROR":
        return return_code, 0
    if status in ("SIGNALED", "CORE_DUMPED"):
        return 0, signal
    return None, None


def array_tasks(task: str, max_tasks: int | None) -> str:
    """An array task range as text prints it; accounting keeps it as a hex bitmap (``0x3C``).

    Like Slurm's xlate_array_task_str(): ``a-b,c``, or ``a-b:step`` for evenly spaced tasks,
    cut to 63 characters (the last three ``...``), then ``%<max running>`` if there is one.
    """
    if not _HEX_MASK.fullmatch(task):
        return task
    bits = int(task[2:], 16)
    tasks = [i for i in range(bits.bit_length()) if bits >> i & 1]
    text = _task_ranges(tasks)
    if len(text) > _ARRAY_TEXT_MAX - 2:
        text = text[: _ARRAY_TEXT_MAX - 3] + "..."
    if max_tasks:
        text += f"%{max_tasks}"
    return text


def _task_ranges(tasks: list[int]) -> str:
    if not tasks:
        return ""
    first, last = tasks[0], tasks[-1]
    if last - first > 10 and len(tasks) > 5 and tasks[1] != first + 1:
        steps = {b - a for a, b in itertools.pairwise(tasks)}
        if len(steps) == 1:
            return f"{first}-{last}:{steps.pop()}"
    ranges: list[str] = []
    start = prev = first
    for task in [*tasks[1:], -2]:
        if task == prev + 1:
            prev = task
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = task
    return ",".join(ranges)


def time_text(value: int | None, unset: str, seen: dict[int, str] | None = None) -> str:
    """A time as Slurm prints it (local time, ``%FT%T``), ``unset`` for none; ``seen`` keeps
    the texts already made (jobs of one output share many times)."""
    if not value or value >= INFINITE:
        return unset
    if seen is None:
        return time.strftime(_TIME_FORMAT, time.localtime(value))
    text = seen.get(value)
    if text is None:
        text = seen[value] = time.strftime(_TIME_FORMAT, time.localtime(value))
    return text


def squeue_end_text(
    end: int | None, unlimited: bool, now: float, seen: dict[int, str] | None = None
) -> str:
    """The end time as squeue prints it: NONE while a job without a time limit runs."""
    if unlimited and end is not None and end > now:
        return "NONE"
    return time_text(end, "N/A", seen)


def squeue_row(job: SlurmJob, *, now: float, seen: dict[int, str] | None = None) -> SqueueRow:
    """What ``squeue --format=SQUEUE_FORMAT`` prints for this job (``now``: for the end time
    of a job without a time limit, which squeue prints as NONE while it lies ahead)."""
    return SqueueRow(
        str(job.job_id),
        job.state,
        job.reason,
        time_text(job.start, "N/A", seen),
        squeue_end_text(job.end, job.unlimited, now, seen),
        job.nodes,
        job.name,
    )


def sacct_row(job: SlurmJob, seen: dict[int, str] | None = None) -> SacctRow:
    """What ``sacct --parsable2 --format=SACCT_FORMAT`` prints for this job (its allocation)."""
    exit_code, signal = job.exit_code, job.signal
    if exit_code is None:
        signal = None
    else:
        if exit_code >= 128:  # sacct prints 137 as 9
            exit_code -= 128
        signal = signal or 0
    return SacctRow(
        job.id_text,
        str(job.job_id),
        job.state,
        job.cancelled_by,
        exit_code,
        signal,
        job.reason,
        time_text(job.start, "Unknown", seen),
        time_text(job.end, "Unknown", seen),
        job.nodes,
        job.name,
    )
