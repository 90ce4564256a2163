"""Starts and stops a private Slurm cluster that lives entirely under one directory.

Mobius turns pods into Slurm jobs, so its integration tests, benchmarks and any machine without a
Slurm of its own need a real cluster to talk to. `serve_private_slurm` builds one from nothing but
the installed binaries, without touching the system's ``/etc/slurm`` or ``/run/munge``: its own
munged (own key, socket, pid and seed files), its own generated ``slurm.conf`` (free TCP ports,
state, spool and log directories, a scheduler tuned for short submit-to-start latency) and one
``slurmd -N <node>`` per node, all on this machine. Client commands reach it through the
``SLURM_CONF`` it hands back; ``AuthInfo=socket=...`` in that file points them at our munged.

Every daemon runs under ``trio.run_process`` inside the task's nursery, shielded from outer
cancellation and stopped explicitly: on the way out the jobs are cancelled, ``scontrol shutdown``
stops slurmctld and the slurmds, whatever is left gets SIGTERM then SIGKILL, munged goes last and
any slurmstepd of this cluster still alive is killed with its job's processes. A daemon that exits
on its own, or nodes that are not idle in time, are a `StartupError` carrying the tail of the
daemon's log and what to check.

Unix socket paths must stay under 108 bytes (munged's socket, slurmstepd's sockets in the spool
directory). When ``root`` is too long for that, the sockets live in a short temporary directory,
linked from ``root/run`` and removed on shutdown. Controller state (``root/state``) survives
restarts, so jobs keep their ids and records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import NoReturn

import msgspec
import trio

from mobius.errors import ConfigError, StartupError

__all__ = [
    "READY_TIMEOUT",
    "STOP_GRACE",
    "PrivateSlurmSettings",
    "SlurmEnvironment",
    "serve_private_slurm",
    "slurm_reachable",
]

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0  # seconds from starting munged to every node idle
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL

_KILL_WAIT = 5  # slurm.conf KillWait: SIGTERM -> SIGKILL for cancelled jobs
_JOBS_GONE_TIMEOUT = _KILL_WAIT + 5.0
_SHUTDOWN_TIMEOUT = 10.0
_POLL_INTERVAL = 0.1
_COMMAND_TIMEOUT = 5.0
_LOG_TAIL_LINES = 20
_MEMORY_MARGIN_MB = 256  # at least this much (or 5 %) of the machine is left out of a node
_MAX_RUN_DIR_LEN = 60  # room for "/spool/<node>/<node>_<job>.<step>" within 107 bytes
_UNSAFE_IN_CONF = re.compile(r'[\s#"\\]')
_PARTITION_NAME = re.compile(r"[A-Za-z0-9_.-]+")

_Probe = Callable[[], Awaitable[str | None]]  # None when ready, else what is still missing


class PrivateSlurmSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the private cluster looks like; everything it writes lives under ``root``.

    Nodes may claim more CPUs and memory than the machine has (``SlurmdParameters=
    config_overrides``), e.g. for scale tests with mostly pending or sleeping jobs.
    """

    root: Path
    nodes: int = 1
    cpus_per_node: int | None = None  # default: os.cpu_count()
    # GPUs each node declares as GRES (gpu, counted only: no devices are bound), so that
    # --gres=gpu:N jobs can be scheduled and seen in scontrol show job.
    gpus_per_node: int = 0
    memory_mb_per_node: int | None = None  # default: the machine's memory minus a margin
    partition: str = "debug"
    ready_timeout: float = READY_TIMEOUT

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ConfigError(f"nodes must be at least 1, not {self.nodes}")
        if self.gpus_per_node < 0:
            raise ConfigError(f"gpus_per_node must not be negative, not {self.gpus_per_node}")
        if self.cpus_per_node is not None and self.cpus_per_node < 1:
            raise ConfigError(f"cpus_per_node must be at least 1, not {self.cpus_per_node}")
        if self.ready_timeout <= 0:
            raise ConfigError(f"ready_timeout must be positive, not {self.ready_timeout}")
        if self.memory_mb_per_node is not None and self.memory_mb_per_node < 1:
            raise ConfigError(
                f"memory_mb_per_node must be at least 1, not {self.memory_mb_per_node}"
            )
        if not _PARTITION_NAME.fullmatch(self.partition):
            raise ConfigError(
                f"partition {self.partition!r}: use letters, digits, '_', '.' and '-' only"
            )
        if _UNSAFE_IN_CONF.search(str(self.root)):
            raise ConfigError(
                f"root {str(self.root)!r} contains whitespace, '#', '\"' or '\\', which "
                "slurm.conf cannot hold; choose another directory"
            )


class SlurmEnvironment(msgspec.Struct, frozen=True, kw_only=True):
    """A running private cluster, as reported by `serve_private_slurm` once every node is idle."""

    conf_path: Path
    env: dict[str, str]  # extra environment for Slurm client commands: SLURM_CONF
    node_names: list[str]
    partition: str
    log_dir: Path  # munged.log, slurmctld.log, slurmd-<node>.log


async def slurm_reachable(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``sinfo`` (current environment plus ``env``) reaches a Slurm controller.

    False when sinfo is not installed, fails, or does not answer within 5 seconds.
    """
    answer = await _run_client(["sinfo", "--noheader"], {**os.environ, **(env or {})})
    return answer is not None and answer[0] == 0


async def serve_private_slurm(
    settings: PrivateSlurmSettings,
    *,
    task_status: trio.TaskStatus[SlurmEnvironment] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run a private Slurm cluster until cancelled; ``task_status.started`` once nodes are idle.

    Raises `StartupError` if a binary is missing, a daemon exits (before or after the cluster is
    ready), or the nodes are not idle within ``settings.ready_timeout``. Once daemons run, the
    error arrives inside an ExceptionGroup; catch it with ``except* StartupError``.
    """
    layout = await trio.to_thread.run_sync(partial(_prepare, settings))
    cluster = SlurmEnvironment(
        conf_path=layout.conf,
        env={"SLURM_CONF": str(layout.conf)},
        node_names=list(layout.nodes),
        partition=layout.partition,
        log_dir=layout.logs,
    )
    env = {**os.environ, **cluster.env}
    daemons: list[_Daemon] = []
    waiting: _Daemon | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.move_on_after(settings.ready_timeout) as startup:
                    for stage in _stages(layout, env):
                        for daemon, _ in stage:
                            daemons.append(daemon)
                            await nursery.start(daemon.run)
                        for daemon, probe in stage:
                            waiting = daemon
                            await daemon.wait_ready(probe)
                            daemon.ready = True
                if startup.cancelled_caught:
                    late = waiting or daemons[-1]
                    raise StartupError(
                        await late.describe(
                            f"was not ready within {settings.ready_timeout:.0f} s "
                            f"(last check: {late.last_check})"
                        )
                    )
                log.info("private Slurm ready: SLURM_CONF=%s", layout.conf)
                task_status.started(cluster)
                await trio.sleep_forever()
            finally:
                # Shielded, because this runs exactly when we are being cancelled.
                with trio.CancelScope(shield=True):
                    await _stop(daemons, env, layout)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_clean_up, layout)


def _stages(layout: _Layout, env: Mapping[str, str]) -> list[list[tuple[_Daemon, _Probe]]]:
    """The daemons in start order, each with the check that says it is ready; the daemons of
    one stage start together, the next stage once all of them are ready."""
    conf = str(layout.conf)
    munged = _Daemon(
        "munged",
        [
            "munged",
            "--foreground",
            "--force",  # needed as root; also takes over a socket a crashed munged left behind
            f"--socket={layout.munge_socket}",
            f"--key-file={layout.munge_key}",
            f"--pid-file={layout.munge_key.with_name('munged.pid')}",
            f"--seed-file={layout.munge_key.with_name('munged.seed')}",
        ],
        layout.logs / "munged.log",
        # In the foreground munged ignores --log-file and logs to stderr.
        output_to_log=True,
        hint=(
            f"Check that {layout.munge_key} belongs to this user with mode 0600 and that "
            f"{layout.munge_socket.parent} is writable."
        ),
    )
    slurmctld = _Daemon(
        "slurmctld",
        ["slurmctld", "-D", "-f", conf],
        layout.logs / "slurmctld.log",
        # Side files (gres.conf) are looked up beside SLURM_CONF, not beside -f.
        env={"SLURM_CONF": str(conf)},
        hint=(
            f"Check that port {layout.ctld_port} is free, that {layout.state} is writable and "
            f"that {layout.conf} is valid."
        ),
    )
    slurmds: list[tuple[_Daemon, _Probe]] = []
    for node, port in layout.nodes.items():
        slurmd = _Daemon(
            f"slurmd {node}",
            ["slurmd", "-D", "-f", conf, "-N", node],
            layout.logs / f"slurmd-{node}.log",
            env={"SLURM_CONF": str(conf)},
            hint=(
                f"Check that port {port} is free and what slurmctld says about {node} in "
                f"{layout.logs / 'slurmctld.log'}."
            ),
        )
        slurmds.append((slurmd, partial(_node_idle, env, node)))
    return [
        [(munged, partial(_socket_exists, layout.munge_socket))],
        [(slurmctld, partial(_controller_answers, env))],
        slurmds,
    ]


# --------------------------------------------------------------------------------------------
# Daemons


class _Daemon:
    """One daemon process: started in the nursery, stopped on request, an error if it exits."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        hint: str,
        output_to_log: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.hint = hint
        self.output_to_log = output_to_log
        self.started = False
        self.ready = False  # its readiness check passed
        self.expect_exit = False  # set before `scontrol shutdown`
        self.last_check = "no answer yet"
        # Outer cancellation must not reach the process: `stop` decides when it ends.
        self._scope = trio.CancelScope(shield=True)
        self._exited = trio.Event()

    def __repr__(self) -> str:
        state = "exited" if self._exited.is_set() else "running" if self.started else "new"
        return f"<_Daemon {self.name} {state} log={self.log_path}>"

    @property
    def running(self) -> bool:
        return self.started and not self._exited.is_set()

    async def run(
        self, *, task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with self._scope:
                output = await trio.to_thread.run_sync(self._open_output)
                self.started = True
                try:
                    result = await trio.run_process(
                        self.argv,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        check=False,
                        env=None if self.env is None else {**os.environ, **self.env},
                        # Keep a terminal's Ctrl-C away: `_stop` ends them in order.
                        start_new_session=True,
                        deliver_cancel=_terminate,
                        task_status=task_status,
                    )
                except OSError as exc:
                    raise StartupError(
                        f"{self.name} could not be started from {self.argv[0]}: {exc}; "
                        "it comes with the slurm-wlm (slurmctld, slurmd) and munge packages"
                    ) from exc
                finally:
                    os.close(output)
            if self._scope.cancel_called or self.expect_exit:
                return
            reason = _exit_reason(result.returncode)
            if self.ready:
                reason += " after it was ready"
            raise StartupError(await self.describe(reason))
        finally:
            self._exited.set()

    def _open_output(self) -> int:
        if self.output_to_log:
            return os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # slurmctld -D and slurmd -D copy every line of the log file named in slurm.conf to
        # stdout, without timestamps; the log file is enough.
        return os.open(os.devnull, os.O_WRONLY)

    async def wait_ready(self, probe: _Probe) -> None:
        """Poll ``probe`` until it says ready; `last_check` keeps what it saw last."""
        await _poll(probe, seen=self._saw)

    def _saw(self, answer: str) -> None:
        self.last_check = answer

    async def wait_exited(self) -> None:
        await self._exited.wait()

    async def stop(self) -> None:
        """SIGTERM (SIGKILL after `STOP_GRACE`) unless it already exited; wait for the end."""
        self._scope.cancel()
        if self.started:
            await self._exited.wait()

    async def describe(self, what: str) -> str:
        tail = await trio.to_thread.run_sync(_tail, self.log_path, _LOG_TAIL_LINES)
        return f"{self.name} {what}; last lines of {self.log_path}:\n{tail}\n{self.hint}"


async def _terminate(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `STOP_GRACE` seconds."""
    process.terminate()
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
        return
    log.warning("%s ignored SIGTERM for %.0f s; killing it", process.args, STOP_GRACE)
    process.kill()


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


async def _stop(daemons: Sequence[_Daemon], env: Mapping[str, str], layout: _Layout) -> None:
    """Cancel all jobs, ``scontrol shutdown``, then end whatever is left, newest first."""
    try:
        slurm = [d for d in daemons if d.name != "munged"]
        if slurm and slurm[0].running and slurm[0].ready:  # else client commands just hang
            with trio.move_on_after(_JOBS_GONE_TIMEOUT):
                await _run_client(["scancel", f"--partition={layout.partition}"], env)
                await _poll(partial(_no_steps_left, layout.conf))
            for daemon in slurm:
                daemon.expect_exit = True
            with trio.move_on_after(_SHUTDOWN_TIMEOUT):
                await _run_client(["scontrol", "shutdown"], env)
                for daemon in slurm:
                    await daemon.wait_exited()
    finally:
        for daemon in reversed(daemons):
            await daemon.stop()
        killed = await trio.to_thread.run_sync(_kill_steps_of, layout.conf)
        if killed:
            log.warning("killed %d processes of jobs that outlived the cluster", killed)


# --------------------------------------------------------------------------------------------
# Readiness checks: each answers None when ready, else a short description of what it saw.


async def _poll(probe: _Probe, *, seen: Callable[[str], object] = lambda _: None) -> None:
    """Call ``probe`` every `_POLL_INTERVAL` seconds until it answers None."""
    while True:
        answer = await probe()
        if answer is None:
            return
        seen(answer)
        await trio.sleep(_POLL_INTERVAL)


async def _no_steps_left(conf: Path) -> str | None:
    steps = await trio.to_thread.run_sync(_steps_of, conf)
    return f"slurmstepd still running: {steps}" if steps else None


async def _socket_exists(path: Path) -> str | None:
    if await trio.Path(path).is_socket():
        return None
    return f"no socket at {path} yet"


async def _controller_answers(env: Mapping[str, str]) -> str | None:
    answer = await _run_client(["scontrol", "ping"], env)
    if answer is None:
        return "scontrol ping did not answer"
    returncode, out = answer
    if returncode == 0 and " is UP" in out:
        return None
    return f"scontrol ping: {out.strip()[:200]}"


async def _node_idle(env: Mapping[str, str], node: str) -> str | None:
    argv = ["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%t"]
    answer = await _run_client(argv, env)
    if answer is None:
        return "sinfo did not answer"
    returncode, out = answer
    state = out.strip()
    if returncode == 0 and state == "idle":
        return None
    return f"sinfo says {node} is {state[:200] or 'missing'}"


async def _run_client(argv: list[str], env: Mapping[str, str]) -> tuple[int, str] | None:
    """Exit code and stdout (plus stderr) of a short client command; None if it took too long."""
    with trio.move_on_after(_COMMAND_TIMEOUT):
        try:
            result = await trio.run_process(
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        except OSError as exc:
            return -1, f"{argv[0]}: {exc}"
        out = result.stdout + result.stderr
        return result.returncode, out.decode(errors="replace")
    return None


# --------------------------------------------------------------------------------------------
# Files


class _Layout(msgspec.Struct, frozen=True, kw_only=True):
    conf: Path
    logs: Path
    state: Path
    run: Path  # sockets, spool and pid files; short enough for unix socket paths
    temp_run: Path | None  # `run` when it had to go to a temporary directory
    link: Path  # root/run
    munge_key: Path
    munge_socket: Path
    partition: str
    ctld_port: int
    nodes: dict[str, int]  # node name -> slurmd port


def _prepare(settings: PrivateSlurmSettings) -> _Layout:
    """Create the directories, the munge key (once) and a fresh slurm.conf with free ports."""
    root = settings.root.absolute()
    logs, state, munge = root / "log", root / "state", root / "munge"
    for directory in (root, logs, state):
        directory.mkdir(parents=True, exist_ok=True)
    munge.mkdir(mode=0o700, exist_ok=True)
    munge.chmod(0o700)
    key = munge / "munge.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
    key.chmod(0o600)  # munged refuses a key others can read
    for old in logs.glob("*.log"):
        old.replace(old.with_name(old.name + ".1"))

    link = root / "run"
    run, temp_run = _run_dir(link)
    nodes = [f"n{i}" for i in range(1, settings.nodes + 1)]
    for node in nodes:
        (run / "spool" / node).mkdir(parents=True, exist_ok=True)
    munge_socket = run / "munge.socket"
    for stale in (munge_socket, munge_socket.with_name(munge_socket.name + ".lock")):
        stale.unlink(missing_ok=True)

    ctld_port, *node_ports = _free_ports(1 + len(nodes))
    layout = _Layout(
        conf=root / "slurm.conf",
        logs=logs,
        state=state,
        run=run,
        temp_run=temp_run,
        link=link,
        munge_key=key,
        munge_socket=munge_socket,
        partition=settings.partition,
        ctld_port=ctld_port,
        nodes=dict(zip(nodes, node_ports, strict=True)),
    )
    cpus = settings.cpus_per_node or os.cpu_count() or 1
    memory = settings.memory_mb_per_node or _default_memory_mb()
    layout.conf.write_text(
        _slurm_conf(layout, cpus=cpus, memory_mb=memory, gpus=settings.gpus_per_node)
    )
    # Slurm drops GPUs without device files: each fake GPU is a link to /dev/null.
    devices = layout.conf.parent / "dev"
    devices.mkdir(exist_ok=True)
    for i in range(settings.gpus_per_node):
        link = devices / f"gpu{i}"
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    gres = "".join(
        f"NodeName={node} Name=gpu File={devices}/gpu[0-{settings.gpus_per_node - 1}]\n"
        for node in layout.nodes
        if settings.gpus_per_node
    )
    (layout.conf.parent / "gres.conf").write_text(gres)
    return layout


def _run_dir(link: Path) -> tuple[Path, Path | None]:
    """``link`` itself if its path is short enough, else a temporary directory it points to."""
    if link.is_symlink():
        link.unlink()
    if len(str(link)) <= _MAX_RUN_DIR_LEN:
        link.mkdir(exist_ok=True)
        return link, None
    parent = tempfile.gettempdir()
    if len(parent) > _MAX_RUN_DIR_LEN // 2:
        parent = "/tmp"
    temp = Path(tempfile.mkdtemp(prefix="mobius-slurm-", dir=parent))
    link.symlink_to(temp, target_is_directory=True)
    return temp, temp


def _clean_up(layout: _Layout) -> None:
    if layout.temp_run is not None:
        shutil.rmtree(layout.temp_run, ignore_errors=True)
        if layout.link.is_symlink():
            layout.link.unlink()


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _default_memory_mb() -> int:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return max(1, total - max(_MEMORY_MARGIN_MB, total // 20))


def _slurm_conf(layout: _Layout, *, cpus: int, memory_mb: int, gpus: int = 0) -> str:
    host = socket.gethostname().split(".")[0]
    user = pwd.getpwuid(os.getuid()).pw_name
    run, logs = layout.run, layout.logs
    lines = [
        "# A private cluster of mobius.slurm.cluster; rewritten on every start.",
        "ClusterName=mobius",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={layout.ctld_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        f"AuthInfo=socket={layout.munge_socket}",
        "CredType=cred/munge",
        # cgroup plugins need a pure cgroup v1 or v2 hierarchy, which many machines lack.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        # Without it a job that asks for no memory gets the whole node.
        f"DefMemPerCPU={max(1, memory_mb // cpus)}",
        # Nodes may claim more CPUs and memory than the machine has.
        "SlurmdParameters=config_overrides",
        # Batch jobs start at the next scheduler pass, which runs at most once a second.
        "SchedulerParameters=sched_min_interval=0,batch_sched_delay=0,sched_interval=1",
        "MessageTimeout=5",
        "SlurmdTimeout=30",
        f"KillWait={_KILL_WAIT}",
        "InactiveLimit=0",
        "MinJobAge=300",  # finished jobs stay visible in squeue for 5 minutes
        "MaxJobCount=100000",
        "ReturnToService=2",
        f"StateSaveLocation={layout.state}",
        f"SlurmdSpoolDir={run}/spool/%n",
        f"SlurmctldPidFile={run}/slurmctld.pid",
        f"SlurmdPidFile={run}/slurmd-%n.pid",
        f"SlurmctldLogFile={logs}/slurmctld.log",
        f"SlurmdLogFile={logs}/slurmd-%n.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        *(["GresTypes=gpu"] if gpus else []),
    ]
    for node, port in layout.nodes.items():
        lines.append(
            f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
            f"CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN"
            + (f" Gres=gpu:{gpus}" if gpus else "")
        )
    lines.append(
        f"PartitionName={layout.partition} Nodes={','.join(layout.nodes)} Default=YES "
        "MaxTime=INFINITE State=UP"
    )
    return "\n".join(lines) + "\n"


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read()
    except OSError as exc:
        return f"    (cannot read the log: {exc})"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text) or "    (the log is empty)"


# --------------------------------------------------------------------------------------------
# Job processes: slurmstepd gets SLURM_CONF from its slurmd, which is how we find ours.


def _steps_of(conf: Path) -> list[int]:
    """Process ids of the slurmstepd processes serving jobs of the cluster at ``conf``."""
    marker = b"SLURM_CONF=" + os.fsencode(conf)
    steps = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", "rb") as f:
                if f.read().strip() != b"slurmstepd":
                    continue
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    steps.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours to read
    return steps


def _kill_steps_of(conf: Path) -> int:
    """SIGKILL the slurmstepds of ``conf`` and their descendants; how many were killed."""
    steps = _steps_of(conf)
    if not steps:
        return 0
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and entry.name.isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    doomed, todo = [], list(steps)
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo.extend(children.get(pid, ()))
    for pid in doomed:
        with contextlib.suppress(OSError):  # already gone
            os.kill(pid, signal.SIGKILL)
    return len(doomed)
