"""Big Slurm outputs for the parser benchmarks: ``squeue --json`` and ``sacct --parsable2``.

- ``squeue_json_output(n)``: what ``squeue --json`` of Slurm 24.05 (data_parser v0.0.41) prints
  for the same ``n`` jobs as ``_scale.squeue_output(n)`` describes in text: every field of a job
  that version writes (about 110, most of them not read by Mobius), pretty-printed as Slurm
  prints it, so that the size and the work of skipping are real. The job id is the one ``%A``
  would print (a digit string), and times are UTC;
- ``sacct_output(n)``: ``sacct --noheader --parsable2 --allocations --format=SACCT_FORMAT`` for
  ``n`` jobs that left squeue: a realistic mix of ended states, exit codes and signals,
  ``CANCELLED by <uid>``, array tasks and het components, names that are pod UIDs.
"""

from __future__ import annotations

import calendar
import json
import random
import time
import uuid
from typing import Any

from _scale import squeue_output

__all__ = ["sacct_output", "squeue_json_output"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _novals(number: int | None = None, *, infinite: bool = False) -> dict[str, Any]:
    return {"set": number is not None, "infinite": infinite, "number": number or 0}


def _epoch(text: str) -> int:
    return 0 if text == "N/A" else calendar.timegm(time.strptime(text, _TIME_FORMAT))


# The fields of a v0.0.41 job that Mobius does not read, with typical values.
_OTHER_FIELDS: dict[str, Any] = {
    "account": "team-a",
    "accrue_time": _novals(1717243200),
    "admin_comment": "",
    "allocating_node": "login01",
    "array_max_tasks": _novals(0),
    "association_id": 42,
    "batch_features": "",
    "batch_flag": True,
    "batch_host": "node001",
    "flags": ["EXACT_CPU_COUNT_REQUESTED", "USING_DEFAULT_QOS", "USING_DEFAULT_WCKEY"],
    "burst_buffer": "",
    "burst_buffer_state": "",
    "cluster": "cluster",
    "cluster_features": "",
    "command": "(null)",
    "container": "",
    "container_id": "",
    "contiguous": False,
    "core_spec": 0,
    "thread_spec": 32766,
    "cores_per_socket": _novals(),
    "billable_tres": {"set": True, "infinite": False, "number": 1.0},
    "cpus_per_task": _novals(1),
    "cpu_frequency_minimum": _novals(),
    "cpu_frequency_maximum": _novals(),
    "cpu_frequency_governor": _novals(),
    "cpus_per_tres": "",
    "cron": "",
    "deadline": _novals(0),
    "delay_boot": _novals(0),
    "dependency": "",
    "eligible_time": _novals(1717243200),
    "excluded_nodes": "",
    "extra": "",
    "failed_node": "",
    "features": "",
    "federation_origin": "",
    "federation_siblings_active": "",
    "federation_siblings_viable": "",
    "gres_detail": [],
    "group_id": 1000,
    "group_name": "team-a",
    "het_job_id_set": "",
    "job_resources": {
        "select_type": ["CR_CORE", "CR_MEMORY"],
        "nodes": {
            "count": 1,
            "select_type": ["AVAILABLE", "ONE_ROW"],
            "list": "node001",
            "whole": False,
            "allocation": [
                {
                    "index": 0,
                    "name": "node001",
                    "cpus": {"count": 1, "used": 0},
                    "memory": {"used": 0, "allocated": 1024},
                    "sockets": [{"index": 0, "cores": [{"index": 0, "status": ["ALLOCATED"]}]}],
                }
            ],
        },
        "cpus": 1,
        "threads_per_core": _novals(1),
    },
    "job_size_str": [],
    "last_sched_evaluation": _novals(1717243201),
    "licenses": "",
    "mail_type": [],
    "mail_user": "alice",
    "max_cpus": _novals(0),
    "max_nodes": _novals(0),
    "mcs_label": "",
    "memory_per_tres": "",
    "network": "",
    "nice": 0,
    "tasks_per_core": _novals(),
    "tasks_per_tres": _novals(0),
    "tasks_per_node": _novals(0),
    "tasks_per_socket": _novals(),
    "tasks_per_board": _novals(0),
    "cpus": _novals(1),
    "node_count": _novals(1),
    "tasks": _novals(1),
    "prefer": "",
    "memory_per_cpu": _novals(),
    "memory_per_node": _novals(1024),
    "minimum_cpus_per_node": _novals(1),
    "minimum_tmp_disk_per_node": _novals(0),
    "power": {"flags": []},
    "preempt_time": _novals(0),
    "preemptable_time": _novals(0),
    "pre_sus_time": _novals(0),
    "hold": False,
    "priority": _novals(4294901759),
    "profile": ["NOT_SET"],
    "qos": "normal",
    "reboot": False,
    "required_nodes": "",
    "minimum_switches": 0,
    "requeue": True,
    "resize_time": _novals(0),
    "restart_cnt": 0,
    "resv_name": "",
    "scheduled_nodes": "",
    "selinux_context": "",
    "shared": [],
    "show_flags": ["SHOW_ALL", "SHOW_DETAIL", "SHOW_LOCAL"],
    "sockets_per_board": 0,
    "sockets_per_node": _novals(),
    "standard_error": "/home/alice/slurm-%j.out",
    "standard_input": "/dev/null",
    "standard_output": "/home/alice/slurm-%j.out",
    "suspend_time": _novals(0),
    "system_comment": "",
    "time_minimum": _novals(0),
    "threads_per_core": _novals(),
    "tres_bind": "",
    "tres_freq": "",
    "tres_per_job": "",
    "tres_per_node": "",
    "tres_per_socket": "",
    "tres_per_task": "cpu=1",
    "tres_req_str": "cpu=1,mem=1G,node=1,billing=1",
    "tres_alloc_str": "cpu=1,mem=1G,node=1,billing=1",
    "user_id": 1000,
    "maximum_switch_wait_time": 0,
    "wckey": "",
    "current_working_directory": "/home/alice",
}
# What squeue's %T prints, as the state flags v0.0.41 lists.
_FLAGS = {
    "COMPLETING": ["RUNNING", "COMPLETING"],
    "CONFIGURING": ["RUNNING", "CONFIGURING"],
}


def _pretty(value: Any, indent: str) -> str:
    """``value`` as Slurm pretty-prints JSON, for a value at depth ``indent``."""
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)


_OTHER_TEXT = _pretty(_OTHER_FIELDS, "  ")[2:-4]  # the members, without "{\n" and "\n  }"


def _job(line: str, i: int) -> str:
    job_id, state, reason, start, end, nodes, name = line.split("|", 6)
    array_job = het_job = 0
    task: int | None = None
    tasks = ""
    offset: int | None = None
    if "_" in job_id:
        base, _, rest = job_id.partition("_")
        array_job = int(base)
        if rest.startswith("["):
            tasks = rest[1:-1]
            job_id = base
        else:
            task = int(rest)
            job_id = str(5_000_000 + i)  # an array task has an id of its own
    elif "+" in job_id:
        base, _, component = job_id.partition("+")
        het_job, offset = int(base), int(component)
        job_id = str(int(base) + offset)
    description = ""
    if reason.startswith("ReqNodeNotAvail,"):
        reason, description = "ReqNodeNotAvail", reason
    exit_code = {
        "status": ["SUCCESS"],
        "return_code": _novals(0),
        "signal": {"id": _novals(), "name": ""},
    }
    read = {
        "array_job_id": _novals(array_job),
        "array_task_id": _novals(task),
        "array_task_string": tasks,
        "comment": "",
        "derived_exit_code": exit_code,
        "end_time": _novals(_epoch(end)),
        "exit_code": exit_code,
        "het_job_id": _novals(het_job),
        "het_job_offset": _novals(offset),
        "job_id": int(job_id),
        "job_state": _FLAGS.get(state, [state]),
        "name": name,
        "nodes": nodes,
        "partition": "batch",
        "start_time": _novals(_epoch(start)),
        "state_description": description,
        "state_reason": reason,
        "submit_time": _novals(1717243200),
        "time_limit": _novals(60),
        "user_name": "alice",
    }
    fields = ",\n    ".join(f"{json.dumps(k)}: {_pretty(v, '    ')}" for k, v in read.items())
    return "  {\n" + _OTHER_TEXT + ",\n    " + fields + "\n  }"


def squeue_json_output(n: int, *, seed: int = 0) -> bytes:
    """``squeue --json`` (24.05) for the jobs of ``squeue_output(n, seed=seed)``."""
    jobs = ",\n".join(
        _job(line, i) for i, line in enumerate(squeue_output(n, seed=seed).splitlines())
    )
    meta = {
        "plugin": {
            "type": "",
            "name": "",
            "data_parser": "data_parser/v0.0.41",
            "accounting_storage": "accounting_storage/slurmdbd",
        },
        "client": {"source": "/dev/pts/0", "user": "alice", "group": "team-a"},
        "command": ["squeue", "--json"],
        "slurm": {
            "version": {"major": "24", "micro": "5", "minor": "05"},
            "release": "24.05.5",
            "cluster": "cluster",
        },
    }
    head = (
        '{\n  "jobs": [\n'
        + jobs
        + '\n  ],\n  "last_backfill": '
        + _pretty(_novals(1717243290), "  ")
        + ',\n  "last_update": '
        + _pretty(_novals(1717243295), "  ")
        + ',\n  "meta": '
        + _pretty(meta, "  ")
        + ',\n  "errors": [],\n  "warnings": []\n}\n'
    )
    return head.encode()


_ENDED = (
    # (state, weight, exit code, signal, reason)
    ("COMPLETED", 60, 0, 0, "None"),
    ("FAILED", 12, 1, 0, "NonZeroExitCode"),
    ("FAILED", 3, 0, 9, "JobLaunchFailure"),
    ("CANCELLED", 12, 0, 15, "None"),
    ("TIMEOUT", 6, 0, 15, "TimeLimit"),
    ("OUT_OF_MEMORY", 3, 0, 125, "OutOfMemory"),
    ("NODE_FAIL", 1, 0, 0, "NodeDown"),
    ("RUNNING", 2, 0, 0, "None"),
    ("PENDING", 1, 0, 0, "Priority"),
)


def sacct_output(n: int, *, seed: int = 0) -> str:
    """What ``sacct --noheader --parsable2 --allocations --format=SACCT_FORMAT`` prints for
    ``n`` jobs, most of which have ended."""
    rng = random.Random(seed)
    weights = [weight for _, weight, *_ in _ENDED]
    base = 4_000_000
    lines = []
    for i in range(n):
        raw = base + i
        kind = rng.random()
        if kind < 0.05:
            job_id = f"{base - 1000}_{i % 1000}"
        elif kind < 0.07:
            job_id = f"{raw - i % 2}+{i % 2}"
        else:
            job_id = str(raw)
        state, _, exit_code, signal, reason = rng.choices(_ENDED, weights)[0]
        if state == "CANCELLED":
            state = f"CANCELLED by {rng.choice((1000, 1000, 1001, 0))}"
        day, hour, minute = 1 + i % 28, rng.randrange(24), rng.randrange(60)
        start = f"2024-06-{day:02d}T{hour:02d}:{minute:02d}:{rng.randrange(60):02d}"
        end = f"2024-06-{day + 1:02d}T{hour:02d}:{minute:02d}:00"
        nodes = f"node{rng.randrange(1, 500):03d}"
        if state == "PENDING":
            start = end = "Unknown"
            nodes = "None assigned"
        elif state == "RUNNING":
            end = "Unknown"
        name = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        lines.append(
            f"{job_id}|{raw}|{state}|{exit_code}:{signal}|{reason}|{start}|{end}|{nodes}|{name}\n"
        )
    return "".join(lines)
