"""``kubectl attach``: the output of a container's current run, from now until the run ends.

The job script gives containers no stdin (``</dev/null``) and sends their output through the
CRI log writer into ``logs/<container>/<run>.log`` (:mod:`mobius.pods.logformat`), so attaching
means following that file from its current end and splitting the records back into stdout and
stderr. The run has ended when ``ctl/c/<container>.exit`` is newer than ``.started``; then the
rest of the file is sent and the session ends with Success, as the kubelet's attach does when the
container's streams close. The file is looked at twice a second: the API server holds no
subscription we could wait on, and the file lives on shared storage where inotify does not see
writes made on compute nodes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import trio

from mobius.errors import ParseError
from mobius.kubelet.streams.remotecommand import ExecIO
from mobius.pods.logformat import parse_record, run_file_name

POLL = 0.5


def _latest_run(log_dir: Path) -> int | None:
    with contextlib.suppress(OSError):
        runs = [int(n[:-4]) for n in os.listdir(log_dir) if n.endswith(".log") and n[:-4].isdigit()]
        return max(runs) if runs else None
    return None


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _run_ended(ctl: Path, container: str) -> bool:
    started = _mtime(ctl / f"{container}.started")
    return started >= 0 and _mtime(ctl / f"{container}.exit") >= started


async def follow_output(pod_dir: Path, container: str, io: ExecIO, *, poll: float = POLL) -> int:
    """Copy what the container writes from now on to ``io`` until its run ends; 0."""
    log_dir, ctl = pod_dir / "logs" / container, pod_dir / "ctl" / "c"
    run = _latest_run(log_dir)
    path = log_dir / run_file_name(run) if run is not None else None
    offset = _size(path) if path is not None else 0
    pending = b""
    while True:
        ended = _run_ended(ctl, container)  # before reading, so nothing written after is lost
        newest = _latest_run(log_dir)
        if newest is not None and newest != run:  # a restart: follow the new run from its start
            run, path, offset, pending = newest, log_dir / run_file_name(newest), 0, b""
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                async with await trio.open_file(path, "rb") as f:
                    await f.seek(offset)
                    data = await f.read()
                offset += len(data)
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    await _emit(line, io)
        if ended:
            return 0
        await trio.sleep(poll)


async def _emit(line: bytes, io: ExecIO) -> None:
    try:
        record = parse_record(line)
    except ParseError:
        return
    text = record.text if record.partial else record.text + b"\n"
    sink = io.stderr if record.stream == "stderr" and io.stderr is not None else io.stdout
    if sink is not None:
        await sink.send_all(text)
