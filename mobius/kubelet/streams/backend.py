"""Run an exec session's command: inside the pod's container, in the pod's Slurm job.

``srun --overlap --jobid=<job>`` starts a step in the running job on its node (``--overlap``
because the batch step holds the job's CPUs), and the runtime's own exec enters the container:
``podman exec`` into ``mobius-<uid>-<container>``. With a tty, ``srun --pty`` gives the step a
remote pseudo-terminal; locally srun sits on a pty of ours whose controlling-terminal session
``setsid -c`` makes it lead, so a resize (TIOCSWINSZ on our side) reaches srun as SIGWINCH,
which srun forwards to the remote pty, where podman passes it on to the container's terminal.

srun reports a task's non-zero exit as ``srun: error: <node>: task 0: Exited with exit code N``
on stderr (or into the terminal), which kubectl users must not see; so the remote command is
wrapped in ``sh -c '"$@"; echo $? >"$0"' <exit file> ...`` and the exit code comes back through
a file in the pod folder (shared with the compute nodes, like the control files).

Apptainer has no pods and our containers are not instances, so there is nothing to enter:
:func:`apptainer_exec` runs the command in a NEW container of the same SIF in the job's
allocation. It shares the node, network and bind-mounted files with the pod's containers, but
not their processes, ``--writable-tmpfs`` changes or environment. That limitation is reported
to users in the docs, not hidden.

The process runs locally (srun is a client); :func:`run_command` pipes or pty-attaches it to an
:class:`~mobius.kubelet.streams.remotecommand.ExecIO` and returns the exit code.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import struct
import subprocess
import termios
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import trio

from mobius.kubelet.streams.remotecommand import ExecFailed, ExecIO, terminal_sizes

log = logging.getLogger(__name__)

__all__ = ["Command", "apptainer_exec", "podman_exec", "run_command", "srun_step"]

_EXIT_WRAPPER = '"$@"; echo "$?" >"$0"'
DEFAULT_SIZE = (24, 80)
_TERM_GRACE = 5.0


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """A local process that serves one exec session."""

    argv: tuple[str, ...]
    env: dict[str, str] = {}  # on top of our own environment
    tty: bool = False
    exit_file: str | None = None  # where the exit code lands, when not the process's own

    def __repr__(self) -> str:
        return f"<Command {' '.join(self.argv)!r} tty={self.tty}>"


def srun_step(
    job_id: str,
    remote: Sequence[str],
    *,
    tty: bool,
    exit_file: Path,
    env: Mapping[str, str],
    srun: str = "srun",
) -> Command:
    """``remote`` as a step of job ``job_id``, its exit code written to ``exit_file``."""
    argv = [
        srun,
        "--quiet",
        "--overlap",
        f"--jobid={job_id}",
        "--nodes=1",
        "--ntasks=1",
        *(["--pty"] if tty else []),
        "sh",
        "-c",
        _EXIT_WRAPPER,
        str(exit_file),
        *remote,
    ]
    return Command(argv=tuple(argv), env=dict(env), tty=tty, exit_file=str(exit_file))


def _exit_file(pod_dir: Path) -> Path:
    return pod_dir / "exec" / f"{secrets.token_hex(8)}.exit"


def podman_exec(
    *,
    uid: str,
    job_id: str,
    container: str,
    argv: Sequence[str],
    stdin: bool,
    tty: bool,
    slurm_env: Mapping[str, str],
    pod_dir: Path,
    podman: Sequence[str] = ("podman", "--log-level=error"),
) -> Command:
    """``podman exec`` into the pod's container, in its job. ``pod_dir`` is the pod's folder."""
    remote = [
        *podman,
        "exec",
        *(["--interactive"] if stdin else []),
        *(["--tty"] if tty else []),
        f"mobius-{uid}-{container}",
        *argv,
    ]
    # The job script runs podman with the per-pod containers.conf (cgroup manager, events).
    env = {**slurm_env, "CONTAINERS_CONF": str(pod_dir / "containers.conf")}
    return srun_step(job_id, remote, tty=tty, exit_file=_exit_file(pod_dir), env=env)


def apptainer_exec(
    *,
    job_id: str,
    sif: str,
    argv: Sequence[str],
    tty: bool,
    slurm_env: Mapping[str, str],
    pod_dir: Path,
    apptainer: Sequence[str] = ("apptainer",),
) -> Command:
    """A new container of the pod's SIF in its job (see the module docstring for what differs)."""
    remote = [*apptainer, "exec", "--cleanenv", "--no-home", sif, *argv]
    return srun_step(job_id, remote, tty=tty, exit_file=_exit_file(pod_dir), env=slurm_env)


# -- running ------------------------------------------------------------------------------


async def _copy(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except trio.BrokenResourceError:  # a pty's EIO once the process is gone
        pass


async def _feed(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    """Copy the client's input, then close the process's input so it sees end of file."""
    try:
        await _copy(source, sink)
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(sink)


async def _stop(process: trio.Process) -> None:
    """TERM (srun forwards it to the step), KILL after a grace period."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(_TERM_GRACE):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def _exit_code(process: trio.Process, exit_file: str | None) -> int:
    if exit_file is not None:
        try:
            text = Path(exit_file).read_text().strip()
        except OSError:
            text = ""
        finally:
            Path(exit_file).unlink(missing_ok=True)
        if text.isdigit():
            return int(text)
        if process.returncode == 0:  # the step ran but the file did not come back
            raise ExecFailed(f"the command's exit code did not arrive in {exit_file}")
    code = process.returncode or 0
    return 128 - code if code < 0 else code


async def run_command(command: Command, io: ExecIO) -> int:
    """Run ``command`` wired to ``io``; its exit code. Cancelling stops the process."""
    env = {**os.environ, **command.env}
    if command.exit_file is not None:
        await trio.Path(command.exit_file).parent.mkdir(parents=True, exist_ok=True)
    if command.tty:
        return await _run_on_pty(command, io, env)
    pipe, null = subprocess.PIPE, subprocess.DEVNULL
    try:
        process = await trio.lowlevel.open_process(
            list(command.argv),
            stdin=pipe if io.stdin else null,
            stdout=pipe if io.stdout else null,
            stderr=pipe if io.stderr else null,
            env=env,
        )
    except OSError as exc:
        raise ExecFailed(f"could not start {command.argv[0]}: {exc}") from exc
    try:
        async with trio.open_nursery() as nursery:
            if io.stdin is not None and process.stdin is not None:
                nursery.start_soon(_feed, io.stdin, process.stdin)
            async with trio.open_nursery() as outputs:
                if io.stdout is not None and process.stdout is not None:
                    outputs.start_soon(_copy, process.stdout, io.stdout)
                if io.stderr is not None and process.stderr is not None:
                    outputs.start_soon(_copy, process.stderr, io.stderr)
                await process.wait()
            nursery.cancel_scope.cancel()  # stop waiting for input nobody reads
    finally:
        await _stop(process)
    return _exit_code(process, command.exit_file)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _run_on_pty(command: Command, io: ExecIO, env: dict[str, str]) -> int:
    master, slave = os.openpty()
    _set_size(slave, *DEFAULT_SIZE)
    try:
        # setsid -c: a new session whose controlling terminal is the pty, so resizes signal it.
        process = await trio.lowlevel.open_process(
            ["setsid", "-c", *command.argv], stdin=slave, stdout=slave, stderr=slave, env=env
        )
    except OSError as exc:
        os.close(master)
        raise ExecFailed(f"could not start {command.argv[0]}: {exc}") from exc
    finally:
        os.close(slave)
    terminal = trio.lowlevel.FdStream(master)

    async def resize() -> None:
        if io.resize is None:
            return
        async for size in terminal_sizes(io.resize):
            if size.width > 0 and size.height > 0:
                try:
                    _set_size(terminal.fileno(), size.height, size.width)
                except OSError as exc:
                    if exc.errno != errno.EBADF:
                        raise

    async def type_in() -> None:
        if io.stdin is None:
            return
        try:
            while data := await io.stdin.receive_some(65536):
                await terminal.send_all(data)
            await terminal.send_all(b"\x04")  # end of input, as a terminal says it
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(type_in)
            nursery.start_soon(resize)
            async with trio.open_nursery() as outputs:
                if io.stdout is not None:
                    outputs.start_soon(_copy, terminal, io.stdout)
                await process.wait()
                # What the process wrote is still in the pty: read it until EIO, not forever.
                outputs.cancel_scope.deadline = trio.current_time() + 2
            nursery.cancel_scope.cancel()
    finally:
        await _stop(process)
        with trio.CancelScope(shield=True):
            await terminal.aclose()
    return _exit_code(process, command.exit_file)
