"""Slurm client commands (sbatch, squeue, scancel, sinfo) run as subprocesses.

Every call goes through :func:`run_slurm`, which translates failures into SlurmCommandError
carrying argv, exit code and stderr. Output parsing of squeue and sacct is delegated to
``mobius._fast``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import msgspec
import trio

from mobius._fast import SACCT_FORMAT, SQUEUE_FORMAT, SqueueRow, parse_sacct, parse_squeue
from mobius.errors import ParseError, SlurmCommandError
from mobius.metrics import SLURM_COMMAND_ERRORS, SLURM_COMMAND_SECONDS


class SlurmClient:
    """Runs Slurm commands with a fixed extra environment (e.g. SLURM_CONF of a private cluster)."""

    def __init__(self, *, env: Mapping[str, str] | None = None, timeout: float = 60.0):
        self.extra_env = dict(env or {})
        self.timeout = timeout
        self._env = {**os.environ, **self.extra_env}

    def __repr__(self) -> str:
        return f"<SlurmClient {self.extra_env}>"

    async def run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> str:
        command = os.path.basename(argv[0]) if argv else ""
        began = trio.current_time()
        try:
            return await self._run(argv, stdin=stdin)
        except SlurmCommandError:
            SLURM_COMMAND_ERRORS.labels(command).inc()
            raise
        finally:
            SLURM_COMMAND_SECONDS.labels(command).observe(trio.current_time() - began)

    async def _run(self, argv: Sequence[str], *, stdin: bytes | None) -> str:
        try:
            with trio.fail_after(self.timeout):
                proc = await trio.run_process(
                    list(argv),
                    stdin=stdin,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=self._env,
                )
        except trio.TooSlowError as exc:
            raise SlurmCommandError(argv, -1, f"timed out after {self.timeout}s") from exc
        except OSError as exc:
            raise SlurmCommandError(argv, -1, f"cannot run {argv[0]}: {exc}") from exc
        if proc.returncode != 0:
            raise SlurmCommandError(argv, proc.returncode, proc.stderr.decode(errors="replace"))
        return proc.stdout.decode(errors="replace")

    async def sbatch(self, script: str, args: Sequence[str]) -> str:
        """Submit ``script`` (fed on stdin); return the job id."""
        out = await self.run(["sbatch", *args], stdin=script.encode())
        job_id = out.strip().split(";", 1)[0]
        if not job_id.isdigit():
            raise ParseError("sbatch --parsable output", out)
        return job_id

    async def sbatch_file(self, path: str, args: Sequence[str]) -> str:
        """Submit the script at ``path``; return the job id."""
        out = await self.run(["sbatch", *args, path])
        job_id = out.strip().split(";", 1)[0]
        if not job_id.isdigit():
            raise ParseError("sbatch --parsable output", out)
        return job_id

    async def squeue(self) -> list[SqueueRow]:
        """All of this user's jobs in every state, in one call."""
        out = await self.run(
            ["squeue", "--noheader", "--me", "--states=all", f"--format={SQUEUE_FORMAT}"]
        )
        return parse_squeue(out)

    async def job_state(self, job_id: str) -> str | None:
        """One job's state (``RUNNING``...), or None once it has left the queue: a query for
        that job alone, so stopping many pods never lists the whole queue per pod."""
        try:
            out = await self.run(
                ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%i|%T"]
            )
        except SlurmCommandError as exc:
            if "Invalid job id" in exc.stderr:
                return None
            raise
        for line in out.splitlines():
            jid, _, state = line.strip().partition("|")
            if jid == job_id:
                return state or None
        return None

    async def scancel(
        self, job_id: str, *, signal: str | None = None, batch_only: bool = False
    ) -> None:
        argv = ["scancel"]
        if signal:
            argv.append(f"--signal={signal}")
        if batch_only:
            argv.append("--batch")
        await self.run([*argv, job_id])

    async def accounting_enabled(self) -> bool:
        """Whether the cluster keeps job accounting (so sacct knows jobs that left squeue)."""
        try:
            out = await self.run(["scontrol", "show", "config"])
        except SlurmCommandError:
            return False
        return accounting_storage(out) not in ("", "accounting_storage/none")

    async def sacct(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The final states of ``job_ids`` from accounting, in ONE call: ``{job id: STATE}``."""
        if not job_ids:
            return {}
        out = await self.run(
            [
                "sacct",
                "--noheader",
                "--parsable2",
                "--allocations",
                f"--format={SACCT_FORMAT}",
                f"--jobs={','.join(job_ids)}",
            ]
        )
        return parse_sacct_states(out)

    async def capacity(self) -> Capacity:
        """What the cluster offers: total CPUs and memory, largest node, partitions."""
        out = await self.run(["sinfo", "--noheader", "--Node", "--format=%N|%c|%m|%P|%G"])
        return parse_capacity(out)


class Capacity(msgspec.Struct, frozen=True):
    nodes: int
    cpus: int
    memory_mb: int
    max_node_cpus: int
    max_node_memory_mb: int
    partitions: tuple[str, ...]
    gpus: int = 0


def accounting_storage(config: str) -> str:
    """AccountingStorageType from ``scontrol show config`` output ("" if absent)."""
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return value.strip()
    return ""


def parse_sacct_states(text: str) -> dict[str, str]:
    """``sacct --noheader --parsable2 --format=SACCT_FORMAT`` -> ``{job id: STATE}``.

    Keyed by the id sbatch answered (``JobIDRaw``); step lines (``123.batch``) are left out and
    ``CANCELLED by 1000`` is CANCELLED. A line that is not sacct's raises ParseError naming it.
    """
    return {row.job_id_raw: row.state for row in parse_sacct(text) if not row.step}


def gres_gpus(gres: str) -> int:
    """GPUs in a node's GRES string: ``gpu:a100:4(S:0-1),nic:1`` -> 4; ``(null)`` -> 0."""
    total = 0
    for item in gres.split(","):
        item = item.split("(", 1)[0].strip()
        parts = item.split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count = parts[-1]
        if count.isdigit():
            total += int(count)
        elif len(parts) == 2 or not count:
            total += 1
    return total


def parse_capacity(text: str) -> Capacity:
    """``sinfo --Node --format=%N|%c|%m|%P|%G`` -> the cluster's capacity.

    A node in several partitions is listed once per partition; it is counted once.
    """
    seen: dict[str, tuple[int, int, int]] = {}
    partitions: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5:
            raise ParseError("sinfo output", line, lineno)
        node, cpus, mem, part, gres = parts
        try:
            seen[node] = (int(cpus), int(mem.rstrip("+")), gres_gpus(gres))
        except ValueError:
            raise ParseError("sinfo output", line, lineno) from None
        name = part.rstrip("*")
        if name not in partitions:
            partitions.append(name)
    return Capacity(
        nodes=len(seen),
        cpus=sum(c for c, _, _ in seen.values()),
        memory_mb=sum(m for _, m, _ in seen.values()),
        max_node_cpus=max((c for c, _, _ in seen.values()), default=0),
        max_node_memory_mb=max((m for _, m, _ in seen.values()), default=0),
        partitions=tuple(partitions),
        gpus=sum(g for _, _, g in seen.values()),
    )


__all__ = ["Capacity", "SlurmClient", "SqueueRow", "parse_capacity", "parse_sacct_states"]
