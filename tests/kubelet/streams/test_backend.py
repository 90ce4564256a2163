"""Exec backends: the srun/podman command line, and running local processes on pipes or a pty."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from mobius.kubelet.streams.attach import follow_output
from mobius.kubelet.streams.backend import Command, podman_exec, run_command
from mobius.kubelet.streams.remotecommand import ExecIO


class _Sink(trio.abc.SendStream):
    def __init__(self) -> None:
        self.data = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += bytes(data)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class _Source(trio.abc.ReceiveStream):
    def __init__(self, *chunks: bytes, delay: float = 0.0):
        self.chunks = list(chunks)
        self.delay = delay

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep(self.delay)
        return self.chunks.pop(0) if self.chunks else b""

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def test_podman_exec_is_a_step_of_the_pods_job(tmp_path: Path) -> None:
    command = podman_exec(
        uid="u-1",
        job_id="42",
        container="main",
        argv=["sh", "-c", "echo $HOSTNAME; exit 7"],
        stdin=True,
        tty=True,
        slurm_env={"SLURM_CONF": "/x/slurm.conf"},
        pod_dir=tmp_path,
    )
    argv = list(command.argv)
    assert argv[:7] == [
        "srun",
        "--quiet",
        "--overlap",
        "--jobid=42",
        "--nodes=1",
        "--ntasks=1",
        "--pty",
    ]
    wrapper_at = argv.index("sh")
    assert argv[wrapper_at : wrapper_at + 3] == ["sh", "-c", '"$@"; echo "$?" >"$0"']
    assert argv[wrapper_at + 3] == command.exit_file
    assert argv[wrapper_at + 4 :] == [
        "podman", "--log-level=error", "exec", "--interactive", "--tty", "mobius-u-1-main",
        "sh", "-c", "echo $HOSTNAME; exit 7",
    ]  # fmt: skip
    assert command.env == {
        "SLURM_CONF": "/x/slurm.conf",
        "CONTAINERS_CONF": str(tmp_path / "containers.conf"),
    }
    assert command.tty


async def test_pipes_keep_stdout_and_stderr_apart() -> None:
    out, err = _Sink(), _Sink()
    code = await run_command(
        Command(argv=("sh", "-c", "cat; echo e >&2; exit 5")),
        ExecIO(stdin=_Source(b"in", b"put"), stdout=out, stderr=err),
    )
    assert (code, out.data, err.data) == (5, b"input", b"e\n")


async def test_exit_code_comes_back_through_the_exit_file(tmp_path: Path) -> None:
    exit_file = tmp_path / "exec" / "x.exit"
    command = Command(
        argv=("sh", "-c", '"$@"; echo "$?" >"$0"', str(exit_file), "sh", "-c", "exit 9"),
        exit_file=str(exit_file),
    )
    assert await run_command(command, ExecIO()) == 9
    assert not exit_file.exists()


async def test_a_tty_follows_resizes() -> None:
    out = _Sink()
    resize = _Source(json.dumps({"Width": 120, "Height": 40}).encode())
    code = await run_command(
        Command(argv=("sh", "-c", "read x; stty size; tty >/dev/null && echo is-a-tty"), tty=True),
        ExecIO(stdin=_Source(b"go\r", delay=0.3), stdout=out, resize=resize, tty=True),
    )
    assert code == 0
    assert b"40 120" in out.data
    assert b"is-a-tty" in out.data


async def test_cancelling_stops_the_process() -> None:
    with trio.move_on_after(0.5):
        await run_command(Command(argv=("sleep", "30")), ExecIO())
    # no process left behind: run_command waited for it (trio would warn otherwise)


async def test_attach_follows_the_current_run_until_it_ends(tmp_path: Path) -> None:
    logs, ctl = tmp_path / "logs" / "main", tmp_path / "ctl" / "c"
    logs.mkdir(parents=True)
    ctl.mkdir(parents=True)
    (ctl / "main.started").write_text("t0")
    log = logs / "0.log"
    log.write_bytes(b"2024-01-01T00:00:00.000000000Z stdout F before attach\n")
    out, err = _Sink(), _Sink()

    async def container() -> None:
        await trio.sleep(0.3)
        with log.open("ab") as f:
            f.write(b"2024-01-01T00:00:01.000000000Z stdout P par\n")
            f.write(b"2024-01-01T00:00:01.000000000Z stdout F tial\n")
            f.write(b"2024-01-01T00:00:01.000000000Z stderr F oops\n")
        await trio.sleep(0.3)
        (ctl / "main.exit").write_text("0 t1")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(container)
        with trio.fail_after(10):
            assert (
                await follow_output(tmp_path, "main", ExecIO(stdout=out, stderr=err), poll=0.05)
                == 0
            )
    assert (out.data, err.data) == (b"partial\n", b"oops\n")
