"""Record what the installed Slurm prints for the poller's commands: the ``data/slurm-*`` fixtures.

Starts a private cluster (as the ``tests/slurm`` tests do), submits jobs that end up in the
states the parsers must know (completed, failed with an exit code, killed by a signal,
cancelled, timed out, held, running, array tasks running and waiting, a het job, names with
``|`` and non-ASCII letters), then captures in one go:

- ``squeue.json``: ``squeue --json``;
- ``squeue.txt``: ``squeue`` with the poller's arguments and ``SQUEUE_FORMAT``;
- ``sacct.txt`` / ``sacct.json``: ``sacct`` with ``SACCT_FORMAT`` / ``--json``, or, when the
  cluster keeps no accounting (the private cluster does not), ``sacct.error.txt`` with what
  sacct said and its exit status;
- ``jobs.json``: which job id each submitted job got, and what it was meant to show.

Paths of the temporary cluster and the host name are replaced by fixed placeholders, so the
recordings do not depend on the machine they were made on::

    python -m tests._fast.record_slurm tests/_fast/data/slurm-22.05

Takes about two minutes: the time-limited job needs its minute, and Slurm notices late.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import trio

from mobius._fast import SACCT_FORMAT, SQUEUE_FORMAT
from mobius.slurm.cluster import PrivateSlurmSettings, SlurmEnvironment, serve_private_slurm

ROOT_PLACEHOLDER = "/scratch/mobius-record"
HOST_PLACEHOLDER = "host1"

HET_SCRIPT = """\
#!/bin/sh
#SBATCH --job-name=het
#SBATCH --ntasks=1
#SBATCH hetjob
#SBATCH --ntasks=1
sleep 300
"""

# (key, what it shows, sbatch arguments)
JOBS: list[tuple[str, str, list[str]]] = [
    ("completed", "COMPLETED, exit 0", ["--job-name=ok", "--wrap=echo hello"]),
    ("failed", "FAILED, exit status 3", ["--job-name=fails", "--wrap=exit 3"]),
    ("signalled", "FAILED, killed by signal 9", ["--job-name=killed", "--wrap=kill -KILL $$"]),
    ("cancelled", "CANCELLED by the submitting user", ["--job-name=cancelled", "--wrap=sleep 300"]),
    ("timeout", "TIMEOUT after its 1 minute", ["--job-name=slow", "--time=1", "--wrap=sleep 300"]),
    ("held", "PENDING, reason JobHeldUser", ["--job-name=held", "--hold", "--wrap=true"]),
    (
        "running",
        "RUNNING, a name with '|' and spaces",
        ["--job-name=name|with|bars and spaces", "--wrap=sleep 300"],
    ),
    ("unicode", "RUNNING, a non-ASCII name", ["--job-name=é-ünï-名前", "--wrap=sleep 300"]),
    (
        "array",
        "array 0-5, 2 at a time: 2 tasks RUNNING, the rest PENDING as one row",
        ["--job-name=array", "--array=0-5%2", "--wrap=sleep 300"],
    ),
]


async def run(argv: list[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    done = await trio.run_process(
        argv, env={**os.environ, **env}, capture_stdout=True, capture_stderr=True, check=False
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def sbatch(env: Mapping[str, str], *args: str, cwd: Path, stdin: str | None = None) -> str:
    argv = ["sbatch", "--parsable", "--output=/dev/null", *args]
    done = await trio.run_process(
        argv,
        env={**os.environ, **env},
        cwd=cwd,
        stdin=stdin.encode() if stdin is not None else b"",
        capture_stdout=True,
        capture_stderr=True,
    )
    return done.stdout.decode().strip().split(";")[0]


async def state_of(env: Mapping[str, str], job_id: str) -> str:
    _, out, _ = await run(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"], env
    )
    return out.strip().splitlines()[0] if out.strip() else ""


async def wait_for(env: Mapping[str, str], job_id: str, *states: str) -> None:
    while await state_of(env, job_id) not in states:
        await trio.sleep(0.5)


async def record(slurm: SlurmEnvironment, root: Path) -> dict[str, str]:
    """``{file name: content}`` of the recordings."""
    env = {**slurm.env, "TZ": "UTC"}  # times in the recordings are UTC
    ids: dict[str, dict[str, str]] = {}
    for key, what, args in JOBS:
        job_id = await sbatch(env, *args, cwd=root)
        ids[key] = {"job_id": job_id, "shows": what, "sbatch": shlex.join(args)}
    ids["het"] = {
        "job_id": await sbatch(env, stdin=HET_SCRIPT, cwd=root),
        "shows": "a het job of 2 components",
        "sbatch": "(script with '#SBATCH hetjob')",
    }
    with trio.fail_after(30):
        await wait_for(env, ids["cancelled"]["job_id"], "RUNNING")
    await run(["scancel", ids["cancelled"]["job_id"]], env)
    with trio.fail_after(30):
        for key in ("completed", "failed", "signalled"):
            await wait_for(env, ids[key]["job_id"], "COMPLETED", "FAILED")
        await wait_for(env, ids["cancelled"]["job_id"], "CANCELLED")
    with trio.fail_after(180):
        await wait_for(env, ids["timeout"]["job_id"], "TIMEOUT")
    # Het jobs start only from the backfill scheduler, if it finds room: recorded either way.
    with trio.move_on_after(60):
        await wait_for(env, ids["het"]["job_id"], "RUNNING")
    job_ids = [job["job_id"] for job in ids.values()]

    captures: dict[str, list[str]] = {
        "squeue.json": ["squeue", "--json"],
        "squeue.txt": [
            "squeue", "--noheader", "--me", "--states=all", f"--format={SQUEUE_FORMAT}"
        ],
        "sacct.txt": [
            "sacct", "--noheader", "--parsable2", "--allocations",
            f"--format={SACCT_FORMAT}", f"--jobs={','.join(job_ids)}",
        ],
        "sacct.json": ["sacct", "--json", f"--jobs={','.join(job_ids)}"],
    }  # fmt: skip
    files: dict[str, str] = {}
    errors: list[str] = []
    for name, argv in captures.items():
        code, stdout, stderr = await run(argv, env)
        if code == 0:
            files[name] = scrub(stdout, root)
        else:
            errors.append(f"$ {shlex.join(argv)}\nexit status {code}\n{scrub(stderr, root)}")
    if errors:
        files["sacct.error.txt"] = "\n".join(errors)
    _, version, _ = await run(["sinfo", "--version"], env)
    manifest = {"slurm": version.strip(), "jobs": ids}
    files["jobs.json"] = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    return files


def scrub(text: str, root: Path) -> str:
    """``text`` without the temporary paths and the host name (22.05's JSON escapes ``/``)."""
    for path in {str(root), str(root.resolve())}:
        text = text.replace(path, ROOT_PLACEHOLDER)
        text = text.replace(path.replace("/", "\\/"), ROOT_PLACEHOLDER.replace("/", "\\/"))
    host = re.escape(socket.gethostname().split(".")[0])
    return re.sub(rf"(?<![\w.-]){host}(?![\w.-])", HOST_PLACEHOLDER, text)


async def main(root: Path) -> dict[str, str]:
    settings = PrivateSlurmSettings(root=root / "slurm", cpus_per_node=16)
    async with trio.open_nursery() as nursery:
        slurm: SlurmEnvironment = await nursery.start(serve_private_slurm, settings)
        files = await record(slurm, root)
        nursery.cancel_scope.cancel()
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests._fast.record_slurm OUTPUT_DIR")
    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="mobius-record-") as tmp:
        recorded = trio.run(main, Path(tmp))
    out.mkdir(parents=True, exist_ok=True)
    for name, content in recorded.items():
        (out / name).write_text(content)
