"""Decode ``squeue --json`` and ``sacct --json`` with the stdlib: the readable reference.

``_slurm_json.py`` does the same with msgspec view Structs, which is what Mobius uses; this twin
spells out, field by field, what is read and what is accepted, and the tests hold the msgspec
twin to its results (equal ``SlurmJobs``, and a ParseError for the same documents).

What is read (everything else is ignored, whatever its type):

- the text: JSON in UTF-8 (bytes, or a str without lone surrogates); ``NaN``, ``Infinity`` and
  ``\\u`` escapes of lone surrogates are not JSON; bytes that are not UTF-8 are an error in a
  string that is read and ignored elsewhere (msgspec does not look at what it skips);
- the document: an object; ``jobs`` a list of job objects, ``errors`` a list of objects whose
  ``description`` or ``error`` is a string (both lists may be absent, not null); ``meta`` an
  object or null: ``plugin`` / ``plugins`` objects with ``type``, ``name``, ``data_parser``
  strings, ``slurm`` / ``Slurm`` objects with a ``release`` string and a ``version`` object of
  ``major``, ``minor``, ``micro`` ints or strings; any of them may be null or absent;
- squeue jobs: ``job_id`` (an int, required), ``array_job_id``, ``array_task_id``,
  ``het_job_id``, ``het_job_offset``, ``submit_time``, ``start_time``, ``end_time``,
  ``time_limit`` (numbers), ``array_task_string``, ``name``, ``state_reason``,
  ``state_description``, ``nodes``, ``user_name``, ``partition``, ``comment`` (strings),
  ``job_state`` (a string or a list of strings), ``exit_code`` (an exit code);
- sacct jobs: ``job_id`` (required), ``array`` {``job_id``, ``task_id`` numbers, ``task`` a
  string, ``limits.max.running.tasks`` a number}, ``het`` {``job_id``, ``job_offset``},
  ``state`` {``current`` a state, ``reason`` a string}, ``time`` {``submission``, ``start``,
  ``end``, ``limit``}, ``comment`` (a string, or an object whose ``job`` is a string),
  ``name``, ``nodes``, ``user``, ``partition``, ``kill_request_user`` (strings), ``exit_code``;
- a number: an int, a string (``"Infinity"`` means infinite, any other string not set), null,
  or an object with ``set`` and ``infinite`` booleans (default false) and ``number`` an int
  (default 0): its number if set and not infinite;
- an exit code: an int (a wait status), null, or an object: without ``status``, a number object
  holding a wait status; with ``status`` (a string or a list of strings), ``return_code`` (an
  int, a number object or null) and ``signal``, an object with ``signal_id`` (an int or null),
  ``id`` (an int, a number object or null) and ``name`` (a string or null);
- every field named here may be null or absent, except ``job_id`` and the two lists; ints are
  JSON integers (not booleans, not 1.0); a value of another type is a ParseError.

How the values become a ``SlurmJob`` (``_slurm_jobs``): 0 and not-set numbers are None for the
array and het job ids and for times; an array task id or task range counts only for an array
job, a het offset only for a het job; the time limit is unlimited when null, infinite or
Slurm's INFINITE; the reason is the state description if not empty, else the state reason;
only a CANCELLED job keeps ``kill_request_user``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

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


_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


class _Invalid(Exception):
    """A value of the wrong type; the message says where."""


def decode_squeue_json(data: bytes | str) -> SlurmJobs:
    """The jobs of ``squeue --json`` output, in output order."""
    try:
        document = _document(data)
        return SlurmJobs(
            jobs=[_squeue_job(job, f"$.jobs[{i}]") for i, job in enumerate(_jobs(document))],
            meta=_meta(document.get("meta")),
            errors=_errors(document),
        )
    except _Invalid as exc:
        raise ParseError(WHAT_SQUEUE_JSON, str(exc)) from None


def decode_sacct_json(data: bytes | str) -> SlurmJobs:
    """The jobs of ``sacct --json`` output, in output order (their steps are left out)."""
    try:
        document = _document(data)
        return SlurmJobs(
            jobs=[_sacct_job(job, f"$.jobs[{i}]") for i, job in enumerate(_jobs(document))],
            meta=_meta(document.get("meta")),
            errors=_errors(document),
        )
    except _Invalid as exc:
        raise ParseError(WHAT_SACCT_JSON, str(exc)) from None


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


# --- the document -------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _document(data: bytes | str) -> dict[str, Any]:
    if isinstance(data, bytes):
        # Bytes that are not UTF-8 become lone surrogates, an error where a value is read.
        text = data.decode("utf-8", "surrogateescape")
    elif _SURROGATE.search(data):
        raise _Invalid("not UTF-8: lone surrogates")
    else:
        text = data
    _check_escapes(text)
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # incl. JSONDecodeError
        raise _Invalid(f"not JSON: {exc}") from None
    return _object(document, "$")


def _check_escapes(text: str) -> None:
    """Refuse ``\\u`` escapes of lone surrogates: they are not text."""
    high_end = -1  # where the escape of a high surrogate ended, waiting for its low half
    for escape in _ESCAPE.finditer(text):
        code = int(escape[1], 16) if escape[1] else -1
        if high_end >= 0:
            if escape.start() != high_end or not 0xDC00 <= code <= 0xDFFF:
                raise _Invalid("not JSON: a lone surrogate escape")
            high_end = -1
        elif 0xD800 <= code <= 0xDBFF:
            high_end = escape.end()
        elif 0xDC00 <= code <= 0xDFFF:
            raise _Invalid("not JSON: a lone surrogate escape")
    if high_end >= 0:
        raise _Invalid("not JSON: a lone surrogate escape")


def _jobs(document: dict[str, Any]) -> list[dict[str, Any]]:
    jobs = document.get("jobs", [])
    if type(jobs) is not list:
        raise _Invalid("$.jobs: expected a list")
    return [_object(job, f"$.jobs[{i}]") for i, job in enumerate(jobs)]


def _errors(document: dict[str, Any]) -> tuple[str, ...]:
    errors = document.get("errors", [])
    if type(errors) is not list:
        raise _Invalid("$.errors: expected a list")
    found = []
    for i, item in enumerate(errors):
        error = _object(item, f"$.errors[{i}]")
        described = _string(error, "description", f"$.errors[{i}]")
        named = _string(error, "error", f"$.errors[{i}]")
        found.append(described or named or "")
    return tuple(found)


def _meta(value: Any) -> SlurmMeta:
    meta = _optional_object(value, "$.meta")
    if meta is None:
        return SlurmMeta()
    plugin = _optional_object(meta.get("plugin"), "$.meta.plugin")
    plugins = _optional_object(meta.get("plugins"), "$.meta.plugins")
    for where, found in (("$.meta.plugin", plugin), ("$.meta.plugins", plugins)):
        if found is not None:
            for key in ("type", "name", "data_parser"):
                _string(found, key, where)
    slurm = _optional_object(meta.get("slurm"), "$.meta.slurm")
    old_slurm = _optional_object(meta.get("Slurm"), "$.meta.Slurm")
    for where, found in (("$.meta.slurm", slurm), ("$.meta.Slurm", old_slurm)):
        if found is not None:
            _string(found, "release", where)
            version = _optional_object(found.get("version"), f"{where}.version")
            for key in ("major", "minor", "micro"):
                part = version.get(key) if version is not None else None
                if type(part) is str:
                    _text(part, f"{where}.version.{key}")
                elif part is not None and type(part) is not int:
                    raise _Invalid(f"{where}.version.{key}: expected an int or a string")
    plugin = (plugin if plugin is not None else plugins) or {}
    release = ((slurm if slurm is not None else old_slurm) or {}).get("release")
    return SlurmMeta(
        release=release or "", data_parser=plugin.get("data_parser") or plugin.get("type") or ""
    )


# --- values ---------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Invalid(f"{where}: expected an object")
    return value


def _optional_object(value: Any, where: str) -> dict[str, Any] | None:
    return None if value is None else _object(value, where)


def _string(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None:
        _text(value, f"{where}.{key}")
    return value


def _text(value: Any, where: str) -> str:
    if type(value) is not str:
        raise _Invalid(f"{where}: expected a string")
    if _SURROGATE.search(value):
        raise _Invalid(f"{where}: not UTF-8")
    return value


def _int(value: Any, where: str) -> int:
    if type(value) is not int:
        raise _Invalid(f"{where}: expected an int")
    return value


def _bool(obj: dict[str, Any], key: str, where: str) -> bool:
    value = obj.get(key, False)
    if type(value) is not bool:
        raise _Invalid(f"{where}.{key}: expected a boolean")
    return value


class _Num:
    """A number field, read: its value, and whether it said infinite."""

    __slots__ = ("infinite", "value")

    def __init__(self, value: int | None, infinite: bool) -> None:
        self.value = value
        self.infinite = infinite


def _number_object(obj: dict[str, Any], where: str) -> _Num:
    is_set = _bool(obj, "set", where)
    infinite = _bool(obj, "infinite", where)
    number = _int(obj.get("number", 0), f"{where}.number")
    return _Num(number if is_set and not infinite else None, infinite)


def _num(obj: dict[str, Any], key: str, where: str) -> _Num:
    value = obj.get(key)
    if value is None:
        return _Num(None, False)
    if type(value) is int:
        return _Num(value, False)
    if type(value) is str:
        return _Num(None, _text(value, f"{where}.{key}") == "Infinity")
    if type(value) is dict:
        return _number_object(value, f"{where}.{key}")
    raise _Invalid(f"{where}.{key}: expected a number")


def _int_or_number(obj: dict[str, Any], key: str, where: str) -> int | None:
    """An int, a number object or null (``return_code``, ``signal.id``)."""
    value = obj.get(key)
    if value is None or type(value) is int:
        return value
    if type(value) is dict:
        return _number_object(value, f"{where}.{key}").value
    raise _Invalid(f"{where}.{key}: expected an int or a number object")


def _states(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if type(value) is str:
        return (_text(value, f"{where}.{key}"),)
    if type(value) is list:
        return tuple(_text(v, f"{where}.{key}[{i}]") for i, v in enumerate(value))
    raise _Invalid(f"{where}.{key}: expected a string or a list of strings")


def _exit(obj: dict[str, Any], where: str) -> tuple[int | None, int | None]:
    value = obj.get("exit_code")
    where = f"{where}.exit_code"
    if value is None:
        return None, None
    if type(value) is int:
        return wait_status(value)
    if type(value) is not dict:
        raise _Invalid(f"{where}: expected an exit code")
    raw = _number_object(value, where)  # validates set, infinite, number
    return_code = _int_or_number(value, "return_code", where)
    signal_obj = _optional_object(value.get("signal"), f"{where}.signal")
    signal: int | None = None
    if signal_obj is not None:
        signal_id = signal_obj.get("signal_id")
        if signal_id is not None and type(signal_id) is not int:
            raise _Invalid(f"{where}.signal.signal_id: expected an int")
        by_id = _int_or_number(signal_obj, "id", f"{where}.signal")
        _string(signal_obj, "name", f"{where}.signal")
        signal = signal_id if signal_id is not None else by_id
    if value.get("status") is None:  # a wait status as a number object
        return wait_status(raw.value) if raw.value is not None else (None, None)
    status = _states(value, "status", where)
    return exit_status(status[0] if status else "", return_code, signal)


def _limit(limit: _Num, was_null: bool) -> tuple[int | None, bool]:
    if was_null or limit.infinite or limit.value == INFINITE:
        return None, True
    if limit.value == NO_VAL:
        return None, False
    return limit.value, False


def _time(number: _Num) -> int | None:
    return number.value or None


# --- jobs -----------------------------------------------------------------------------------


def _squeue_job(job: dict[str, Any], where: str) -> SlurmJob:
    if "job_id" not in job:
        raise _Invalid(f"{where}: no job_id")
    job_id = _int(job["job_id"], f"{where}.job_id")
    strings = {
        key: _string(job, key, where) or ""
        for key in (
            "array_task_string",
            "name",
            "state_reason",
            "state_description",
            "nodes",
            "user_name",
            "partition",
            "comment",
        )
    }
    numbers = {
        key: _num(job, key, where)
        for key in (
            "array_job_id",
            "array_task_id",
            "het_job_id",
            "het_job_offset",
            "submit_time",
            "start_time",
            "end_time",
            "time_limit",
        )
    }
    flags = _states(job, "job_state", where)
    exit_code, signal = _exit(job, where)
    time_limit, unlimited = _limit(numbers["time_limit"], job.get("time_limit") is None)
    array_job_id = numbers["array_job_id"].value or None
    het_job_id = numbers["het_job_id"].value or None
    return SlurmJob(
        job_id=job_id,
        state=text_state(flags),
        state_flags=flags,
        name=strings["name"],
        reason=strings["state_description"] or strings["state_reason"],
        exit_code=exit_code,
        signal=signal,
        array_job_id=array_job_id,
        array_task_id=numbers["array_task_id"].value if array_job_id else None,
        array_tasks=strings["array_task_string"] if array_job_id else "",
        het_job_id=het_job_id,
        het_job_offset=numbers["het_job_offset"].value if het_job_id else None,
        submit=_time(numbers["submit_time"]),
        start=_time(numbers["start_time"]),
        end=_time(numbers["end_time"]),
        nodes=strings["nodes"],
        time_limit=time_limit,
        unlimited=unlimited,
        user=strings["user_name"],
        partition=strings["partition"],
        comment=strings["comment"],
    )


def _sacct_job(job: dict[str, Any], where: str) -> SlurmJob:
    if "job_id" not in job:
        raise _Invalid(f"{where}: no job_id")
    job_id = _int(job["job_id"], f"{where}.job_id")
    array = _optional_object(job.get("array"), f"{where}.array") or {}
    array_job_id = _num(array, "job_id", f"{where}.array").value or None
    array_task_id = _num(array, "task_id", f"{where}.array").value
    task = _string(array, "task", f"{where}.array") or ""
    max_tasks: int | None = None
    limits = _optional_object(array.get("limits"), f"{where}.array.limits")
    if limits is not None:
        top = _optional_object(limits.get("max"), f"{where}.array.limits.max")
        if top is not None:
            running = _optional_object(top.get("running"), f"{where}.array.limits.max.running")
            if running is not None:
                max_tasks = _num(running, "tasks", f"{where}.array.limits.max.running").value
    het = _optional_object(job.get("het"), f"{where}.het") or {}
    het_job_id = _num(het, "job_id", f"{where}.het").value or None
    het_job_offset = _num(het, "job_offset", f"{where}.het").value
    state = _optional_object(job.get("state"), f"{where}.state") or {}
    flags = _states(state, "current", f"{where}.state")
    reason = _string(state, "reason", f"{where}.state") or ""
    times = _optional_object(job.get("time"), f"{where}.time") or {}
    submit, start, end, limit = (
        _num(times, key, f"{where}.time") for key in ("submission", "start", "end", "limit")
    )
    time_limit, unlimited = _limit(limit, times.get("limit") is None)
    exit_code, signal = _exit(job, where)
    comment = job.get("comment")
    if type(comment) is dict:
        comment = _string(comment, "job", f"{where}.comment")
    elif comment is not None and type(comment) is not str:
        raise _Invalid(f"{where}.comment: expected a string or an object")
    strings = {
        key: _string(job, key, where) or ""
        for key in ("name", "nodes", "user", "partition", "kill_request_user")
    }
    return SlurmJob(
        job_id=job_id,
        state=text_state(flags),
        state_flags=flags,
        name=strings["name"],
        reason=reason,
        exit_code=exit_code,
        signal=signal,
        array_job_id=array_job_id,
        array_task_id=array_task_id if array_job_id else None,
        array_tasks=array_tasks(task, max_tasks) if array_job_id else "",
        het_job_id=het_job_id,
        het_job_offset=het_job_offset if het_job_id else None,
        submit=_time(submit),
        start=_time(start),
        end=_time(end),
        nodes=strings["nodes"],
        time_limit=time_limit,
        unlimited=unlimited,
        user=strings["user"],
        partition=strings["partition"],
        comment=comment or "",
        cancelled_by=strings["kill_request_user"] if "CANCELLED" in flags else "",
    )
