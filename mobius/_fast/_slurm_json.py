"""Decode ``squeue --json`` and ``sacct --json`` of Slurm 22.05 to 24.11 with msgspec.

The text output of squeue (``_squeue``) is what the poller reads every tick; JSON is the other
way to ask Slurm, and the one newer Slurm versions document. This module decodes it into
``SlurmJob`` records (``decode_squeue_json``, ``decode_sacct_json``) or straight into the rows
the text parsers return (``parse_squeue_json``, ``parse_sacct_json``), so that the poller can
use either. ``_slurm_json_py.py`` is its readable twin on the stdlib ``json`` module and defines
what is accepted; the tests hold the two to equal results (msgspec is already compiled, so
there is no ``.pyx`` here).

The view Structs below name only the fields Mobius reads; msgspec skips the rest without
building them (a job of 22.05 carries about a hundred fields). They accept what every version
writes for those fields (see ``_slurm_jobs``):

- numbers: an int, null, ``{"set": bool, "infinite": bool, "number": int}`` (23.02 and later),
  or the string ``"Infinity"`` (the data_parser's "complex" mode);
- a job state: a string (22.05, 23.02) or a list of strings (23.11 and later);
- an exit code: a wait status as an int (squeue, 22.05) or as a number object (squeue, 23.02),
  or an object ``{status, return_code, signal}`` (sacct, and squeue from 23.11 on);
- ``meta.plugin`` (22.05, 23.11 and later) or ``meta.plugins`` (23.02); ``meta.Slurm`` (22.05,
  23.02) or ``meta.slurm`` (23.11 and later), with the version as ints or strings.

Anything else of the wrong type raises ParseError naming the output and what msgspec said.
"""

from __future__ import annotations

import time

import msgspec

from mobius._fast._rows import SacctRow, SqueueRow
from mobius._fast._slurm_jobs import (
    INFINITE,
    NO_VAL,
    SlurmJob,
    SlurmJobs,
    SlurmMeta,
    array_tasks,
    exit_status,
    sacct_row,
    squeue_row,
    text_state,
    wait_status,
)
from mobius.errors import ParseError

__all__ = [
    "WHAT_SACCT_JSON",
    "WHAT_SQUEUE_JSON",
    "decode_sacct_json",
    "decode_squeue_json",
    "parse_sacct_json",
    "parse_squeue_json",
]

WHAT_SQUEUE_JSON = "squeue --json output"
WHAT_SACCT_JSON = "sacct --json output"


class _Number(msgspec.Struct, gc=False):
    set: bool = False
    infinite: bool = False
    number: int = 0


_Num = int | str | _Number | None


class _Signal(msgspec.Struct, gc=False):
    signal_id: int | None = None  # 22.05, 23.02
    id: int | _Number | None = None  # 23.11 and later
    name: str | None = None


class _ExitCode(msgspec.Struct, gc=False):
    # 23.02's squeue: a wait status as a number object.
    set: bool = False
    infinite: bool = False
    number: int = 0
    # Everything else: what the status means.
    status: str | list[str] | None = None
    return_code: int | _Number | None = None
    signal: _Signal | None = None


_Exit = int | _ExitCode | None


class _Plugin(msgspec.Struct, gc=False):
    type: str | None = None
    name: str | None = None
    data_parser: str | None = None


class _Version(msgspec.Struct, gc=False):
    major: int | str | None = None
    minor: int | str | None = None
    micro: int | str | None = None


class _Release(msgspec.Struct, gc=False):
    version: _Version | None = None
    release: str | None = None


class _Meta(msgspec.Struct, gc=False):
    plugin: _Plugin | None = None
    plugins: _Plugin | None = None
    slurm: _Release | None = None
    old_slurm: _Release | None = msgspec.field(default=None, name="Slurm")


class _Error(msgspec.Struct, gc=False):
    error: str | None = None
    description: str | None = None


class _SqueueJob(msgspec.Struct, gc=False):
    job_id: int
    array_job_id: _Num = None
    array_task_id: _Num = None
    array_task_string: str | None = None
    het_job_id: _Num = None
    het_job_offset: _Num = None
    name: str | None = None
    job_state: str | list[str] | None = None
    state_reason: str | None = None
    state_description: str | None = None
    exit_code: _Exit = None
    submit_time: _Num = None
    start_time: _Num = None
    end_time: _Num = None
    nodes: str | None = None
    time_limit: _Num = None
    user_name: str | None = None
    partition: str | None = None
    comment: str | None = None


class _SqueueDocument(msgspec.Struct, gc=False):
    jobs: list[_SqueueJob] = []
    meta: _Meta | None = None
    errors: list[_Error] = []


class _Running(msgspec.Struct, gc=False):
    tasks: _Num = None


class _Max(msgspec.Struct, gc=False):
    running: _Running | None = None


class _Limits(msgspec.Struct, gc=False):
    max: _Max | None = None


class _Array(msgspec.Struct, gc=False):
    job_id: _Num = None
    task_id: _Num = None
    task: str | None = None
    limits: _Limits | None = None


class _Het(msgspec.Struct, gc=False):
    job_id: _Num = None
    job_offset: _Num = None


class _State(msgspec.Struct, gc=False):
    current: str | list[str] | None = None
    reason: str | None = None


class _Times(msgspec.Struct, gc=False):
    submission: _Num = None
    start: _Num = None
    end: _Num = None
    limit: _Num = None


class _Comment(msgspec.Struct, gc=False):
    job: str | None = None


class _SacctJob(msgspec.Struct, gc=False):
    job_id: int
    array: _Array | None = None
    het: _Het | None = None
    name: str | None = None
    state: _State | None = None
    exit_code: _Exit = None
    time: _Times | None = None
    nodes: str | None = None
    user: str | None = None
    partition: str | None = None
    comment: _Comment | str | None = None
    kill_request_user: str | None = None


class _SacctDocument(msgspec.Struct, gc=False):
    jobs: list[_SacctJob] = []
    meta: _Meta | None = None
    errors: list[_Error] = []


_squeue_decoder = msgspec.json.Decoder(_SqueueDocument)
_sacct_decoder = msgspec.json.Decoder(_SacctDocument)


def decode_squeue_json(data: bytes | str) -> SlurmJobs:
    """The jobs of ``squeue --json`` output, in output order."""
    try:
        document = _squeue_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeEncodeError) as exc:
        raise ParseError(WHAT_SQUEUE_JSON, str(exc)) from exc
    return SlurmJobs(
        jobs=[_squeue_job(job) for job in document.jobs],
        meta=_meta(document.meta),
        errors=_errors(document.errors),
    )


def decode_sacct_json(data: bytes | str) -> SlurmJobs:
    """The jobs of ``sacct --json`` output, in output order (their steps are left out)."""
    try:
        document = _sacct_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeEncodeError) as exc:
        raise ParseError(WHAT_SACCT_JSON, str(exc)) from exc
    return SlurmJobs(
        jobs=[_sacct_job(job) for job in document.jobs],
        meta=_meta(document.meta),
        errors=_errors(document.errors),
    )


def parse_squeue_json(data: bytes | str, *, now: float | None = None) -> list[SqueueRow]:
    """The rows ``squeue --format=SQUEUE_FORMAT`` would print for the jobs of ``squeue --json``
    (``now``: the time of the output, for end times squeue prints as NONE; default: now)."""
    at = time.time() if now is None else now
    seen: dict[int, str] = {}  # time texts, shared by the rows
    return [squeue_row(job, now=at, seen=seen) for job in decode_squeue_json(data).jobs]


def parse_sacct_json(data: bytes | str) -> list[SacctRow]:
    """The rows ``sacct --allocations --format=SACCT_FORMAT`` would print for ``sacct --json``."""
    seen: dict[int, str] = {}
    return [sacct_row(job, seen) for job in decode_sacct_json(data).jobs]


# --- from the views to SlurmJob ---------------------------------------------------------------


def _number(value: _Num) -> int | None:
    """The int a number field holds; None when not set or infinite."""
    if isinstance(value, int):
        return value
    if isinstance(value, _Number):
        return value.number if value.set and not value.infinite else None
    return None


def _nonzero(value: _Num) -> int | None:
    """An id or a time: None when not set, infinite or 0 (Slurm's "none" for both)."""
    return _number(value) or None


def _infinite(value: _Num) -> bool:
    if isinstance(value, _Number):
        return value.infinite
    return value == "Infinity"


def _states(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _exit(value: _Exit) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    if isinstance(value, int):
        return wait_status(value)
    if value.status is None:  # a wait status as a number object
        return wait_status(value.number) if value.set and not value.infinite else (None, None)
    status = value.status if isinstance(value.status, str) else next(iter(value.status), "")
    signal: int | None = None
    if value.signal is not None:
        if value.signal.signal_id is not None:
            signal = value.signal.signal_id
        else:
            signal = _number(value.signal.id)
    return exit_status(status, _number(value.return_code), signal)


def _limit(value: _Num) -> tuple[int | None, bool]:
    """``(minutes, unlimited)`` of a time limit; 22.05 writes null for unlimited."""
    number = _number(value)
    if value is None or _infinite(value) or number == INFINITE:
        return None, True
    if number == NO_VAL:
        return None, False
    return number, False


def _squeue_job(job: _SqueueJob) -> SlurmJob:
    flags = _states(job.job_state)
    exit_code, signal = _exit(job.exit_code)
    time_limit, unlimited = _limit(job.time_limit)
    het_job_id = _nonzero(job.het_job_id)
    array_job_id = _nonzero(job.array_job_id)
    return SlurmJob(
        job_id=job.job_id,
        state=text_state(flags),
        state_flags=flags,
        name=job.name or "",
        reason=job.state_description or job.state_reason or "",
        exit_code=exit_code,
        signal=signal,
        array_job_id=array_job_id,
        array_task_id=_number(job.array_task_id) if array_job_id else None,
        array_tasks=(job.array_task_string or "") if array_job_id else "",
        het_job_id=het_job_id,
        het_job_offset=_number(job.het_job_offset) if het_job_id else None,
        submit=_nonzero(job.submit_time),
        start=_nonzero(job.start_time),
        end=_nonzero(job.end_time),
        nodes=job.nodes or "",
        time_limit=time_limit,
        unlimited=unlimited,
        user=job.user_name or "",
        partition=job.partition or "",
        comment=job.comment or "",
    )


def _sacct_job(job: _SacctJob) -> SlurmJob:
    state = job.state or _State()
    flags = _states(state.current)
    exit_code, signal = _exit(job.exit_code)
    times = job.time or _Times()
    time_limit, unlimited = _limit(times.limit)
    array = job.array or _Array()
    het = job.het or _Het()
    array_job_id = _nonzero(array.job_id)
    het_job_id = _nonzero(het.job_id)
    max_tasks: int | None = None
    if array.limits and array.limits.max and array.limits.max.running:
        max_tasks = _number(array.limits.max.running.tasks)
    comment = job.comment.job if isinstance(job.comment, _Comment) else job.comment
    return SlurmJob(
        job_id=job.job_id,
        state=text_state(flags),
        state_flags=flags,
        name=job.name or "",
        reason=state.reason or "",
        exit_code=exit_code,
        signal=signal,
        array_job_id=array_job_id,
        array_task_id=_number(array.task_id) if array_job_id else None,
        array_tasks=array_tasks(array.task or "", max_tasks) if array_job_id else "",
        het_job_id=het_job_id,
        het_job_offset=_number(het.job_offset) if het_job_id else None,
        submit=_nonzero(times.submission),
        start=_nonzero(times.start),
        end=_nonzero(times.end),
        nodes=job.nodes or "",
        time_limit=time_limit,
        unlimited=unlimited,
        user=job.user or "",
        partition=job.partition or "",
        comment=comment or "",
        cancelled_by=(job.kill_request_user or "") if "CANCELLED" in flags else "",
    )


def _meta(meta: _Meta | None) -> SlurmMeta:
    if meta is None:
        return SlurmMeta()
    plugin = (meta.plugin if meta.plugin is not None else meta.plugins) or _Plugin()
    slurm = (meta.slurm if meta.slurm is not None else meta.old_slurm) or _Release()
    return SlurmMeta(
        release=slurm.release or "", data_parser=plugin.data_parser or plugin.type or ""
    )


def _errors(errors: list[_Error]) -> tuple[str, ...]:
    return tuple(e.description or e.error or "" for e in errors)
