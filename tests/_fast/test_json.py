"""``squeue --json`` / ``sacct --json``: every Slurm version's shapes, the recorded 22.05 outputs,
errors, and the msgspec decoders against their stdlib reference (hypothesis)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mobius._fast
from mobius._fast import SlurmJob, SlurmJobs, SlurmMeta, _slurm_json, _slurm_json_py
from mobius._fast._sacct_py import parse_sacct
from mobius._fast._slurm_jobs import array_tasks, exit_status, text_state, wait_status
from mobius._fast._squeue_py import parse_squeue
from mobius.errors import ParseError

DATA = Path(__file__).parent / "data"
VERSIONS = ["22.05", "23.02", "23.11", "24.05", "24.11"]
SEEN = 1717243500  # 2024-06-01T12:05:00Z: when the synthetic outputs were taken


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Slurm prints local times; the fixtures were taken in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def synthetic(version: str, command: str) -> bytes:
    return (DATA / f"slurm-{version}" / f"{command}.synthetic.json").read_bytes()


def by_id(jobs: SlurmJobs) -> dict[int, SlurmJob]:
    return {job.job_id: job for job in jobs.jobs}


# --- every version decodes to what the text output says --------------------------------------


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("version", VERSIONS)
def test_squeue_json_of_every_version_gives_the_text_rows(
    json_twin: ModuleType, version: str
) -> None:
    text = parse_squeue((DATA / "squeue.synthetic.txt").read_text())
    assert json_twin.parse_squeue_json(synthetic(version, "squeue"), now=SEEN) == text


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("version", VERSIONS)
def test_sacct_json_of_every_version_gives_the_text_rows(
    json_twin: ModuleType, version: str
) -> None:
    expected = []
    for row in parse_sacct((DATA / "sacct.synthetic.txt").read_text()):
        if row.cancelled_by:  # the JSON names the user, the text gives the uid
            row = msgspec.structs.replace(row, cancelled_by={"1000": "alice"}[row.cancelled_by])
        if version in ("22.05", "23.02") and row.signal == 0:  # any normal exit is SUCCESS, 0
            row = msgspec.structs.replace(row, exit_code=0)
        expected.append(row)
    assert json_twin.parse_sacct_json(synthetic(version, "sacct")) == expected


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("command", ["squeue", "sacct"])
def test_jobs_of_every_version(json_twin: ModuleType, version: str, command: str) -> None:
    decode = json_twin.decode_squeue_json if command == "squeue" else json_twin.decode_sacct_json
    jobs = by_id(decode(synthetic(version, command)))
    old = version in ("22.05", "23.02")
    running = jobs[4001]
    assert (running.name, running.state, running.nodes) == (
        "web-1|blue",
        "RUNNING",
        "node[001-002]",
    )
    assert (running.user, running.partition, running.submit) == ("alice", "batch", 1717243200)
    assert (running.time_limit, running.unlimited) == (None, True)
    assert (jobs[4011].time_limit, jobs[4011].unlimited) == (1, False)
    assert (jobs[4012].start, jobs[4012].end, jobs[4012].name) == (None, None, "é-名前")
    assert running.state_flags == ("RUNNING",)
    if command == "squeue":
        completing = jobs[4002]
        assert completing.state == "COMPLETING"
        flags = ("COMPLETING",) if old else ("RUNNING", "COMPLETING")
        assert completing.state_flags == flags
        assert jobs[4003].reason == "ReqNodeNotAvail, UnavailableNodes:node[003,017-020]"
        assert (jobs[4007].exit_code, jobs[4007].signal) == (3, 0)
    else:
        assert 4002 not in jobs
        assert jobs[4003].reason == "ReqNodeNotAvail"
        assert (jobs[4007].exit_code, jobs[4007].signal) == ((0, 0) if old else (3, 0))
        assert jobs[4009].cancelled_by == "alice"
        assert jobs[4011].cancelled_by == ""
    assert (jobs[4008].exit_code, jobs[4008].signal) == (0, 9)
    assert (jobs[4009].state, jobs[4009].exit_code, jobs[4009].signal) == ("CANCELLED", 0, 15)
    array_rest, array_task = jobs[4004], jobs[4010]
    assert (array_rest.array_job_id, array_rest.array_task_id) == (4004, None)
    assert (array_rest.array_tasks, array_rest.id_text) == ("8-15%2", "4004_[8-15%2]")
    assert (array_task.array_job_id, array_task.array_task_id) == (4004, 7)
    assert (array_task.array_tasks, array_task.id_text) == ("", "4004_7")
    assert [
        (jobs[i].het_job_id, jobs[i].het_job_offset, jobs[i].id_text) for i in (4005, 4006)
    ] == [
        (4005, 0, "4005+0"),
        (4005, 1, "4005+1"),
    ]
    assert (running.array_job_id, running.array_task_id, running.het_job_id) == (None, None, None)
    assert running.het_job_offset is None
    assert running.id_text == "4001"


@pytest.mark.parametrize(
    ("version", "squeue_plugin", "sacct_plugin", "release"),
    [
        ("22.05", "openapi/v0.0.38", "openapi/dbv0.0.38", "22.05.8"),
        ("23.02", "data_parser/v0.0.39", "data_parser/v0.0.39", "23.02.7"),
        ("23.11", "data_parser/v0.0.40", "data_parser/v0.0.40", "23.11.10"),
        ("24.05", "data_parser/v0.0.41", "data_parser/v0.0.41", "24.05.5"),
        ("24.11", "data_parser/v0.0.42", "data_parser/v0.0.42", "24.11.1"),
    ],
)
def test_meta_says_who_wrote_it(
    json_twin: ModuleType, version: str, squeue_plugin: str, sacct_plugin: str, release: str
) -> None:
    squeue = json_twin.decode_squeue_json(synthetic(version, "squeue"))
    sacct = json_twin.decode_sacct_json(synthetic(version, "sacct"))
    assert squeue.meta == SlurmMeta(release=release, data_parser=squeue_plugin)
    assert sacct.meta == SlurmMeta(release=release, data_parser=sacct_plugin)
    assert squeue.errors == sacct.errors == ()


# --- what the real 22.05 printed -------------------------------------------------------------

RECORDED = DATA / "slurm-22.05"


def recorded_jobs() -> dict[str, str]:
    manifest = json.loads((RECORDED / "jobs.json").read_text())
    return {key: job["job_id"] for key, job in manifest["jobs"].items()}


@pytest.mark.usefixtures("utc")
def test_recorded_squeue_json_gives_the_recorded_text_rows(json_twin: ModuleType) -> None:
    document = (RECORDED / "squeue.json").read_bytes()
    # When squeue ran: the het job's expected start, the latest time in the output.
    seen = max(job.start or 0 for job in json_twin.decode_squeue_json(document).jobs)
    rows = json_twin.parse_squeue_json(document, now=seen)
    text = parse_squeue((RECORDED / "squeue.txt").read_text())
    assert len(rows) == len(text) == 13
    assert sorted(rows, key=lambda r: int(r.job_id)) == sorted(text, key=lambda r: int(r.job_id))


def test_recorded_squeue_json_jobs(json_twin: ModuleType) -> None:
    decoded = json_twin.decode_squeue_json((RECORDED / "squeue.json").read_bytes())
    assert decoded.meta == SlurmMeta(release="22.05.8", data_parser="openapi/v0.0.38")
    jobs = by_id(decoded)
    ids = {key: int(job_id) for key, job_id in recorded_jobs().items()}
    outcome = {
        key: (jobs[job_id].state, jobs[job_id].exit_code, jobs[job_id].signal)
        for key, job_id in ids.items()
        if key in ("completed", "failed", "signalled", "cancelled", "timeout", "held")
    }
    assert outcome == {
        "completed": ("COMPLETED", 0, 0),
        "failed": ("FAILED", 3, 0),
        "signalled": ("FAILED", 0, 9),
        "cancelled": ("CANCELLED", 0, 15),
        "timeout": ("TIMEOUT", 0, 15),
        "held": ("PENDING", 0, 0),
    }
    assert jobs[ids["held"]].reason == "JobHeldUser"
    assert jobs[ids["timeout"]].time_limit == 1
    assert jobs[ids["running"]].name == "name|with|bars and spaces"
    assert jobs[ids["unicode"]].name == "é-ünï-名前"
    array = sorted(j.id_text for j in jobs.values() if j.array_job_id == ids["array"])
    assert array == [f"{ids['array']}_0", f"{ids['array']}_1", f"{ids['array']}_[2-5%2]"]
    het = sorted(j.id_text for j in jobs.values() if j.het_job_id == ids["het"])
    assert het == [f"{ids['het']}+0", f"{ids['het']}+1"]


def test_sacct_refused_without_accounting() -> None:
    # Why every sacct fixture is synthetic: the recording cluster keeps no accounting.
    assert "Slurm accounting storage is disabled" in (RECORDED / "sacct.error.txt").read_text()


# --- errors ----------------------------------------------------------------------------------

BAD_DOCUMENTS = [
    b"",
    b"[]",
    b"{",
    b"NaN",
    b'{"jobs": {"job_id": 1}}',
    b'{"jobs": null}',
    b'{"jobs": [1]}',
    b'{"jobs": [{}]}',
    b'{"jobs": [{"job_id": "1"}]}',
    b'{"jobs": [{"job_id": 1.0}]}',
    b'{"jobs": [{"job_id": true}]}',
    b'{"jobs": [{"job_id": 1, "name": 5}]}',
    b'{"jobs": [{"job_id": 1, "exit_code": "0:0"}]}',
    b'{"jobs": [{"job_id": 1, "exit_code": {"status": ["ERROR"], "return_code": "3"}}]}',
    b'{"jobs": [{"job_id": 1, "exit_code": {"signal": {"id": true}}}]}',
    b'{"jobs": [], "meta": {"slurm": {"version": {"major": 1.5}}}}',
    b'{"jobs": [], "meta": []}',
    b'{"jobs": [], "errors": [{"error": 1}]}',
    b'{"jobs": [], "errors": null}',
    b'{"jobs": [{"job_id": 1, "name": "\xff"}]}',  # not UTF-8 where it is read
    b'{"jobs": [], "x": "\\udc80"}',  # a lone surrogate is not text, wherever it is
    b'{"jobs": [], "x": "\\ud83d"}',
    b'{"jobs": []} trailing',
]
SQUEUE_ONLY = [
    b'{"jobs": [{"job_id": 1, "job_state": 5}]}',
    b'{"jobs": [{"job_id": 1, "job_state": ["RUNNING", 1]}]}',
    b'{"jobs": [{"job_id": 1, "start_time": 1.5}]}',
    b'{"jobs": [{"job_id": 1, "time_limit": {"set": 1}}]}',
    b'{"jobs": [{"job_id": 1, "end_time": {"number": null}}]}',
    b'{"jobs": [{"job_id": 1, "array_task_id": [7]}]}',
]
SACCT_ONLY = [
    b'{"jobs": [{"job_id": 1, "state": "COMPLETED"}]}',
    b'{"jobs": [{"job_id": 1, "state": {"current": [1]}}]}',
    b'{"jobs": [{"job_id": 1, "time": {"limit": true}}]}',
    b'{"jobs": [{"job_id": 1, "array": {"limits": {"max": {"running": {"tasks": []}}}}}]}',
    b'{"jobs": [{"job_id": 1, "comment": 5}]}',
    b'{"jobs": [{"job_id": 1, "comment": {"job": 5}}]}',
    b'{"jobs": [{"job_id": 1, "het": {"job_offset": "x", "job_id": []}}]}',
]


@pytest.mark.parametrize("document", BAD_DOCUMENTS + SQUEUE_ONLY)
def test_bad_squeue_json(json_twin: ModuleType, document: bytes) -> None:
    with pytest.raises(ParseError) as info:
        json_twin.decode_squeue_json(document)
    assert info.value.what == "squeue --json output"
    assert info.value.lineno is None


@pytest.mark.parametrize("document", BAD_DOCUMENTS + SACCT_ONLY)
def test_bad_sacct_json(json_twin: ModuleType, document: bytes) -> None:
    with pytest.raises(ParseError) as info:
        json_twin.decode_sacct_json(document)
    assert info.value.what == "sacct --json output"


@pytest.mark.parametrize(
    ("document", "errors"),
    [
        (b'{"errors": [{"error": "Invalid user", "error_code": 2}]}', ("Invalid user",)),
        (
            b'{"errors": [{"description": "no such job", "error": "E"}], "jobs": []}',
            ("no such job",),
        ),
        (b'{"errors": [{}], "warnings": [{"description": "w"}]}', ("",)),
    ],
)
def test_errors_the_document_reports(
    json_twin: ModuleType, document: bytes, errors: tuple[str, ...]
) -> None:
    assert json_twin.decode_squeue_json(document) == SlurmJobs(jobs=[], errors=errors)
    assert json_twin.decode_sacct_json(document) == SlurmJobs(jobs=[], errors=errors)


def test_what_is_not_read_is_not_checked(json_twin: ModuleType) -> None:
    document = b'{"jobs": [{"job_id": 1, "x": "\xff", "flags": [{"\xfe": 1}]}], "y": "\xff"}'
    assert [job.job_id for job in json_twin.decode_squeue_json(document).jobs] == [1]
    assert json_twin.decode_squeue_json('{"jobs": [], "x": "\\ud83d\\ude80"}').jobs == []


def test_str_and_bytes_alike(json_twin: ModuleType) -> None:
    document = synthetic("24.11", "squeue")
    assert json_twin.decode_squeue_json(document.decode()) == json_twin.decode_squeue_json(document)


def test_complex_mode_numbers(json_twin: ModuleType) -> None:
    # ``--json=v0.0.41+complex``: plain ints, "Infinity", and null for not set.
    document = json.dumps(
        {"jobs": [{"job_id": 5, "time_limit": "Infinity", "start_time": 1717243205,
                   "end_time": None, "array_job_id": None, "het_job_id": 0}]}
    )  # fmt: skip
    (job,) = json_twin.decode_squeue_json(document).jobs
    assert (job.time_limit, job.unlimited, job.start, job.end) == (None, True, 1717243205, None)
    assert (job.array_job_id, job.het_job_id, job.state, job.state_flags) == (None, None, "", ())


def test_mobius_fast_exports_the_msgspec_twin() -> None:
    assert mobius._fast.parse_squeue_json is _slurm_json.parse_squeue_json
    assert mobius._fast.decode_sacct_json is _slurm_json.decode_sacct_json


# --- the pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        ((), ""),
        (("PENDING",), "PENDING"),
        (("RUNNING", "COMPLETING"), "COMPLETING"),
        (("COMPLETING", "RUNNING"), "COMPLETING"),
        (("PENDING", "REQUEUED", "CONFIGURING"), "CONFIGURING"),
        (("RUNNING", "LAUNCH_FAILED"), "RUNNING"),
        (("LAUNCH_FAILED", "FAILED"), "FAILED"),
        (("UPDATE_DB",), "UPDATE_DB"),
        (("SOMETHING_NEW", "RECONFIG_FAIL"), "SOMETHING_NEW"),
    ],
)
def test_text_state(flags: tuple[str, ...], text: str) -> None:
    assert text_state(flags) == text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, (0, 0)), (768, (3, 0)), (9, (0, 9)), (15, (0, 15)), (0x8B, (0, 11)),
     (0x7F, (None, None)), (0xFFFFFFFE, (None, None)), (-1, (None, None))],
)  # fmt: skip
def test_wait_status(raw: int, expected: tuple[int | None, int | None]) -> None:
    assert wait_status(raw) == expected


@pytest.mark.parametrize(
    ("status", "return_code", "signal", "expected"),
    [("SUCCESS", 0, None, (0, 0)), ("SUCCESS", None, None, (0, 0)), ("ERROR", 3, None, (3, 0)),
     ("SIGNALED", None, 9, (0, 9)), ("SIGNALED", -127, 9, (0, 9)),
     ("CORE_DUMPED", None, None, (0, None)), ("PENDING", None, None, (None, None)),
     ("INVALID", 77, None, (None, None)), ("", None, None, (None, None))],
)  # fmt: skip
def test_exit_status(
    status: str, return_code: int | None, signal: int | None, expected: tuple[int, int]
) -> None:
    assert exit_status(status, return_code, signal) == expected


@pytest.mark.parametrize(
    ("task", "max_tasks", "text"),
    [
        ("", None, ""),
        ("2-5%2", 2, "2-5%2"),  # squeue's records come translated
        ("0xFF00", 2, "8-15%2"),
        ("0xff00", 0, "8-15"),
        ("0x1", None, "0"),
        ("0x2D", None, "0,2-3,5"),
        (hex(sum(1 << i for i in range(0, 19, 3))), None, "0-18:3"),
        (hex(sum(1 << i for i in range(0, 10, 3))), None, "0,3,6,9"),  # too few for a step
        (hex(sum(1 << i for i in range(0, 200, 2))), 4, "0-198:2%4"),
        ("0xZZ", None, "0xZZ"),
        ("0x", None, "0x"),
    ],
)
def test_array_tasks(task: str, max_tasks: int | None, text: str) -> None:
    assert array_tasks(task, max_tasks) == text


def test_array_tasks_cut_long_ranges() -> None:
    every_other = sum(1 << i for i in (*range(0, 60, 2), 61, 62))
    text = array_tasks(hex(every_other), 3)
    assert text.startswith("0,2,4,6,8,10,")
    assert text.endswith("...%3")
    assert len(text) == 63 + 2


# --- hypothesis: msgspec is the reference, only faster -----------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_STATES = ["PENDING", "RUNNING", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "COMPLETING",
           "CONFIGURING", "REQUEUED", "LAUNCH_FAILED", "SOMETHING"]  # fmt: skip
_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_INTS = st.one_of(st.integers(-3, 5), st.integers(0, 2**32 + 3), st.integers())
_NUMBER_OBJECTS = st.fixed_dictionaries(
    {}, optional={"set": st.booleans(), "infinite": st.booleans(), "number": _INTS}
)
_NUMBERS = st.one_of(
    st.none(), _INTS, st.just("Infinity"), _TEXT, _NUMBER_OBJECTS, st.sampled_from([0, 4294967294, 4294967295])
)  # fmt: skip
_STRINGS = st.one_of(st.none(), _TEXT, st.sampled_from(["", "None", "n[1-2]", "0xFF00", "3-5%2"]))
_JOB_STATES = st.one_of(
    st.none(), st.sampled_from(_STATES), st.lists(st.sampled_from(_STATES), max_size=3)
)
_SIGNALS = st.fixed_dictionaries(
    {},
    optional={
        "signal_id": st.one_of(st.none(), _INTS),
        "id": st.one_of(st.none(), _INTS, _NUMBER_OBJECTS),
        "name": _STRINGS,
    },
)
_STATUSES = st.sampled_from(["SUCCESS", "ERROR", "SIGNALED", "CORE_DUMPED", "PENDING", "INVALID"])
_EXIT_CODES = st.one_of(
    st.none(),
    _INTS,
    _NUMBER_OBJECTS,
    st.fixed_dictionaries(
        {"status": st.one_of(_STATUSES, st.lists(_STATUSES, max_size=2))},
        optional={"return_code": st.one_of(st.none(), _INTS, _NUMBER_OBJECTS), "signal": _SIGNALS},
    ),
)
_SQUEUE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(
        ["array_job_id", "array_task_id", "het_job_id", "het_job_offset", "submit_time",
         "start_time", "end_time", "time_limit"],
        _NUMBERS,
    ),
    **dict.fromkeys(
        ["array_task_string", "name", "state_reason", "state_description", "nodes",
         "user_name", "partition", "comment"],
        _STRINGS,
    ),
    "job_state": _JOB_STATES,
    "exit_code": _EXIT_CODES,
    "account": _ANY,  # and fields no decoder reads, of any type
    "flags": _ANY,
}  # fmt: skip
_SACCT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "array": st.fixed_dictionaries(
        {},
        optional={
            "job_id": _NUMBERS,
            "task_id": _NUMBERS,
            "task": _STRINGS,
            "limits": st.fixed_dictionaries(
                {"max": st.fixed_dictionaries({"running": st.fixed_dictionaries({"tasks": _NUMBERS})})}
            ),
        },
    ),
    "het": st.fixed_dictionaries({}, optional={"job_id": _NUMBERS, "job_offset": _NUMBERS}),
    "state": st.fixed_dictionaries({}, optional={"current": _JOB_STATES, "reason": _STRINGS}),
    "time": st.fixed_dictionaries(
        {}, optional=dict.fromkeys(["submission", "start", "end", "limit", "elapsed"], _NUMBERS)
    ),
    "comment": st.one_of(_STRINGS, st.fixed_dictionaries({}, optional={"job": _STRINGS, "system": _ANY})),
    **dict.fromkeys(["name", "nodes", "user", "partition", "kill_request_user"], _STRINGS),
    "exit_code": _EXIT_CODES,
    "steps": _ANY,
}  # fmt: skip
_META = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            key: st.one_of(st.none(), st.fixed_dictionaries({}, optional=dict.fromkeys(
                ["type", "name", "data_parser", "accounting_storage"], _STRINGS)))
            for key in ("plugin", "plugins")
        }
        | {
            key: st.one_of(st.none(), st.fixed_dictionaries({}, optional={
                "release": _STRINGS,
                "version": st.one_of(st.none(), st.fixed_dictionaries({}, optional=dict.fromkeys(
                    ["major", "minor", "micro"], st.one_of(st.none(), _INTS, _TEXT)))),
            }))
            for key in ("slurm", "Slurm")
        },
    ),
)  # fmt: skip
_ERRORS = st.lists(
    st.fixed_dictionaries({}, optional={"error": _STRINGS, "description": _STRINGS, "x": _ANY}),
    max_size=2,
)


def _set_path(document: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    """Put ``value`` at ``path``, where the objects on the way exist."""
    target: Any = document
    for key in path[:-1]:
        target = target.get(key) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target[path[-1]] = value


@st.composite
def documents(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> bytes:
    """A document of any version's shapes, now and then with one value of any type."""
    job = st.fixed_dictionaries({"job_id": _INTS}, optional=fields)
    document: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={"jobs": st.lists(job, max_size=4), "meta": _META, "errors": _ERRORS,
                      "warnings": _ANY, "last_update": _ANY},
        )
    )  # fmt: skip
    if draw(st.integers(0, 3)) == 0:
        where = draw(
            st.sampled_from(
                [("jobs",), ("meta",), ("errors",), ("meta", "plugin"), ("meta", "slurm", "release")]
                + [("jobs", "*", key) for key in fields]
                + [("jobs", "*", "exit_code", "signal"), ("jobs", "*", "exit_code", "status"),
                   ("jobs", "*", "array", "task_id"), ("jobs", "*", "time", "start"),
                   ("jobs", "*", "state", "current"), ("jobs", "*", "job_id")]
            )
        )  # fmt: skip
        value = draw(_ANY)
        if where[:2] == ("jobs", "*"):
            for item in document.get("jobs", [])[:1]:
                _set_path(item, where[2:], value)
        else:
            _set_path(document, where, value)
    return json.dumps(document, ensure_ascii=draw(st.booleans())).encode()


def outcome(decode: Any, document: bytes) -> object:
    try:
        return ("jobs", decode(document))
    except ParseError as exc:
        return ("error", exc.what)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents(_SQUEUE_FIELDS))
@example(document=synthetic("22.05", "squeue"))
@example(document=synthetic("23.02", "squeue"))
@example(document=synthetic("24.11", "squeue"))
@example(document=(RECORDED / "squeue.json").read_bytes())
def test_squeue_decoders_agree(document: bytes) -> None:
    assert outcome(_slurm_json.decode_squeue_json, document) == outcome(
        _slurm_json_py.decode_squeue_json, document
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents(_SACCT_FIELDS))
@example(document=synthetic("22.05", "sacct"))
@example(document=synthetic("23.02", "sacct"))
@example(document=synthetic("24.11", "sacct"))
def test_sacct_decoders_agree(document: bytes) -> None:
    assert outcome(_slurm_json.decode_sacct_json, document) == outcome(
        _slurm_json_py.decode_sacct_json, document
    )


@settings(max_examples=200)
@given(value=_ANY)
def test_decoders_agree_on_any_json(value: object) -> None:
    document = json.dumps(value).encode()
    for fast, reference in [
        (_slurm_json.decode_squeue_json, _slurm_json_py.decode_squeue_json),
        (_slurm_json.decode_sacct_json, _slurm_json_py.decode_sacct_json),
    ]:
        assert outcome(fast, document) == outcome(reference, document)


# Pieces of JSON strings: surrogate pairs, lone halves, escaped backslashes, non-UTF-8 bytes.
_ESCAPES = st.lists(
    st.sampled_from(["a", "\\ud83d", "\\ude80", "\\udc80", "\\\\", "\\", "\udcff"]),
    max_size=6,
).map("".join)


@settings(max_examples=400)
@given(
    data=st.binary(max_size=40)
    | st.text(max_size=40).map(str.encode)
    | st.builds(
        '{{"jobs": [{{"job_id": 1, "name": "{}", "x": "{}"}}]}}'.format, _ESCAPES, _ESCAPES
    ).map(lambda text: text.encode("utf-8", "surrogateescape"))
)
@example(data=b'{"jobs": [{"job_id": 1, "name": "\xff"}]}')
def test_decoders_agree_on_any_bytes(data: bytes) -> None:
    assert outcome(_slurm_json.decode_squeue_json, data) == outcome(
        _slurm_json_py.decode_squeue_json, data
    )
