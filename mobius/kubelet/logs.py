"""``GET /containerLogs/{namespace}/{pod}/{container}``: a container's log, as the kubelet serves it.

The job script writes one CRI log file per run of each container (layout and format in
:mod:`mobius.pods.logformat`); this module picks the file (the latest run, or the one before for
``previous``), finds where ``tailLines`` starts by reading backwards, and streams the records
through :class:`~mobius.pods.logformat.LogRenderer`. With ``follow`` it keeps reading what the
container writes, polling the file with a short back-off (compute nodes write to shared storage,
where inotify sees nothing), until that run has ended: its exit record is newer than its start
record, a later run has begun, the pod reached a final phase, or the pod is gone. Concurrent
follow streams are capped by a ``trio.CapacityLimiter``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import trio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from mobius.models import Pod
from mobius.pods.logformat import (
    InvalidLogOptions,
    LogOptions,
    LogRenderer,
    parse_log_options,
    run_file_name,
    tail_start,
)
from mobius.state import PodPaths, PodStore

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
POLL_MIN, POLL_MAX = 0.05, 0.2
_FINAL_PHASES = ("Succeeded", "Failed")


def _runs(log_dir: Path) -> list[int]:
    try:
        names = os.listdir(log_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(n[:-4]) for n in names if n.endswith(".log") and n[:-4].isdigit())


def _restarts(ctl: Path, container: str) -> int:
    try:
        text = (ctl / "c" / f"{container}.restarts").read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class ContainerLogs:
    """Serves container logs of the pods in ``store`` from the files under ``paths``."""

    def __init__(self, *, store: PodStore, paths: PodPaths, max_streams: int = 512):
        self.store = store
        self.paths = paths
        self.streams = trio.CapacityLimiter(max_streams)

    def __repr__(self) -> str:
        return f"<ContainerLogs {self.paths!r} streams={self.streams.borrowed_tokens}>"

    async def handle(self, request: Request) -> Response:
        ns, name, container = (request.path_params[k] for k in ("namespace", "pod", "container"))
        pod = self.store.by_name(ns, name)
        if pod is None:
            return PlainTextResponse(f'pod "{name}" does not exist\n', 404)
        inits = [c.name for c in pod.spec.init_containers]
        known = [*inits, *(c.name for c in pod.spec.containers)]
        if container not in known:
            return PlainTextResponse(
                f'container "{container}" in pod "{name}" is not valid; '
                f"choose one of: [{' '.join(known)}]\n",
                404,
            )
        try:
            options = parse_log_options(request.query_params, now_ns=time.time_ns())
        except InvalidLogOptions as exc:
            return PlainTextResponse(f"{exc}\n", 400)
        uid = pod.metadata.uid
        log_dir = self.paths.pod_dir(uid) / "logs" / container
        runs = await trio.to_thread.run_sync(_runs, log_dir)
        if not runs:
            waiting = "PodInitializing" if inits and container not in inits else "ContainerCreating"
            return PlainTextResponse(
                f'container "{container}" in pod "{name}" is waiting to start: {waiting}\n', 400
            )
        if options.previous:
            restarts = await trio.to_thread.run_sync(_restarts, self.paths.ctl_dir(uid), container)
            if restarts == 0 or restarts - 1 not in runs:
                return PlainTextResponse(
                    f'previous terminated container "{container}" in pod "{name}" not found\n',
                    400,
                )
            run = restarts - 1
        else:
            run = runs[-1]
        token = object()
        if options.follow:
            try:
                self.streams.acquire_on_behalf_of_nowait(token)
            except trio.WouldBlock:
                return PlainTextResponse("too many log streams; try again later\n", 429)
        return StreamingResponse(
            self._stream(pod, container, run, options, token), media_type="text/plain"
        )

    async def _stream(
        self, pod: Pod, container: str, run: int, options: LogOptions, token: object
    ) -> AsyncIterator[bytes]:
        path = self.paths.pod_dir(pod.metadata.uid) / "logs" / container / run_file_name(run)
        renderer = LogRenderer(options)
        delay = POLL_MIN
        try:
            async with await trio.open_file(path, "rb") as f:
                if options.tail_lines is not None:
                    await f.seek(await _tail_offset(f, options.tail_lines, options.stream))
                rest = b""
                while True:
                    finished = not options.follow or await self._ended(pod, container, run)
                    got_any = False
                    while chunk := await f.read(READ_SIZE):
                        got_any = True
                        data = rest + chunk
                        cut = data.rfind(b"\n") + 1
                        rest = data[cut:]
                        out = b"".join(renderer.feed(line) for line in _split_records(data[:cut]))
                        if out:
                            yield out
                        if renderer.done:
                            return
                    if finished:
                        if rest:  # a record without its newline: the writer was cut off
                            out = renderer.feed(rest)
                            if out:
                                yield out
                        return
                    delay = POLL_MIN if got_any else min(delay * 2, POLL_MAX)
                    await trio.sleep(delay)
        except FileNotFoundError:
            return  # the pod's files were removed while we read
        finally:
            if options.follow:
                self.streams.release_on_behalf_of(token)

    async def _ended(self, pod: Pod, container: str, run: int) -> bool:
        uid = pod.metadata.uid
        current = self.store.get(uid)
        if current is None or current.status.phase in _FINAL_PHASES:
            return True
        base = self.paths.pod_dir(uid)
        ctl = base / "ctl" / "c"

        def check() -> bool:
            if (base / "logs" / container / run_file_name(run + 1)).exists():
                return True
            started, exited = (
                _mtime(ctl / f"{container}.started"),
                _mtime(ctl / f"{container}.exit"),
            )
            return started is not None and exited is not None and exited >= started

        return await trio.to_thread.run_sync(check)


def _split_records(data: bytes) -> list[bytes]:
    """Whole CRI records (``data`` ends with a newline); a lone CR stays inside its record."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]]


class _AsyncFile(Protocol):
    async def seek(self, offset: int, whence: int = 0, /) -> int: ...
    async def read(self, size: int = -1, /) -> bytes: ...


async def _tail_offset(f: _AsyncFile, lines: int, stream: str | None) -> int:
    """Where the last ``lines`` lines of the open file begin, reading backwards in blocks."""
    size = await f.seek(0, os.SEEK_END)
    block = READ_SIZE
    while True:
        start = max(0, size - block)
        await f.seek(start)
        data = await f.read(size - start)
        data = data[: data.rfind(b"\n") + 1]  # whole records only
        skip = 0
        if start > 0:
            skip = data.find(b"\n") + 1  # the first record may be cut
        offset = tail_start(data[skip:], lines, stream=stream)
        if offset is not None:
            return start + skip + offset
        if start == 0:
            return 0
        block *= 4
