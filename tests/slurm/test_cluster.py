"""The private Slurm cluster: real munged, slurmctld and slurmd under a test's directory.

Each test starts its own cluster (about half a second) on free ports, runs real jobs through the
client commands with the ``SLURM_CONF`` it hands back, and checks that stopping it leaves no
daemon, job step or socket directory behind.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from signal import SIGKILL

import pytest
import trio

from mobius.errors import ConfigError, StartupError
from mobius.slurm import cluster
from mobius.slurm.cluster import (
    PrivateSlurmSettings,
    SlurmEnvironment,
    serve_private_slurm,
    slurm_reachable,
)

pytestmark = pytest.mark.slurm

JOB_TIMEOUT = 60.0


@asynccontextmanager
async def private_slurm(settings: PrivateSlurmSettings) -> AsyncIterator[SlurmEnvironment]:
    async with trio.open_nursery() as nursery:
        slurm: SlurmEnvironment = await nursery.start(serve_private_slurm, settings)
        yield slurm
        nursery.cancel_scope.cancel()


async def run(argv: list[str], env: Mapping[str, str]) -> str:
    result = await trio.run_process(
        argv, env={**os.environ, **env}, capture_stdout=True, capture_stderr=True
    )
    return result.stdout.decode()


async def sbatch(env: Mapping[str, str], *args: str) -> str:
    return (await run(["sbatch", "--parsable", *args], env)).strip().split(";")[0]


async def wait_for_state(env: Mapping[str, str], job_id: str, *states: str) -> str:
    """Poll squeue until the job is in one of ``states``; returns that state."""
    with trio.fail_after(JOB_TIMEOUT):
        while True:
            out = await run(
                ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"], env
            )
            if out.strip() in states:
                return out.strip()
            await trio.sleep(0.1)


def processes_of(root: Path, conf: Path) -> dict[int, str]:
    """Live (non-zombie) processes that belong to the cluster under ``root``: daemons name a
    path under it on their command line, slurmstepd carries its SLURM_CONF."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z":
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        mine = any(os.fsencode(root) in arg for arg in argv)
        step = (entry / "comm").read_bytes().strip() == b"slurmstepd" and (
            b"SLURM_CONF=" + os.fsencode(conf) in environ
        )
        if mine or step:
            found[int(entry.name)] = b" ".join(argv).decode(errors="replace")
    return found


async def test_batch_job_runs_and_writes_its_file(tmp_path: Path) -> None:
    out = tmp_path / "hello.txt"
    async with private_slurm(PrivateSlurmSettings(root=tmp_path / "slurm")) as slurm:
        assert slurm.node_names == ["n1"]
        assert slurm.partition == "debug"
        assert slurm.env == {"SLURM_CONF": str(slurm.conf_path)}
        assert await slurm_reachable(slurm.env)
        job_id = await sbatch(slurm.env, "--output=/dev/null", f"--wrap=echo hello > {out}")
        assert await wait_for_state(slurm.env, job_id, "COMPLETED", "FAILED") == "COMPLETED"
        assert out.read_text() == "hello\n"


async def test_two_nodes_run_one_srun_task_each(tmp_path: Path) -> None:
    # A root this long forces the sockets into a short temporary directory.
    root = tmp_path / ("deep" * 20) / "slurm"
    out = tmp_path / "nodes.txt"
    settings = PrivateSlurmSettings(root=root, nodes=2, cpus_per_node=4, memory_mb_per_node=4096)
    async with private_slurm(settings) as slurm:
        run_dir = (root / "run").resolve()
        assert len(str(run_dir)) < len(str(root))
        assert slurm.node_names == ["n1", "n2"]
        nodes = await run(["sinfo", "--noheader", "--Node", "--format=%N %c %m %t"], slurm.env)
        assert nodes.split() == ["n1", "4", "4096", "idle", "n2", "4", "4096", "idle"]
        job_id = await sbatch(
            slurm.env,
            "--nodes=2",
            "--ntasks-per-node=1",
            "--output=/dev/null",
            f"--wrap=srun printenv SLURMD_NODENAME > {out}",
        )
        assert await wait_for_state(slurm.env, job_id, "COMPLETED", "FAILED") == "COMPLETED"
        assert sorted(out.read_text().split()) == ["n1", "n2"]
    assert not run_dir.exists()
    assert not (root / "run").exists()


async def test_jobs_without_memory_request_share_a_node(tmp_path: Path) -> None:
    settings = PrivateSlurmSettings(root=tmp_path / "slurm", cpus_per_node=2)
    async with private_slurm(settings) as slurm:
        jobs = [await sbatch(slurm.env, "--output=/dev/null", "--wrap=sleep 30") for _ in "ab"]
        for job_id in jobs:
            assert await wait_for_state(slurm.env, job_id, "RUNNING") == "RUNNING"


async def test_stopping_leaves_no_process_behind(tmp_path: Path) -> None:
    root = tmp_path / "slurm"
    async with private_slurm(PrivateSlurmSettings(root=root, nodes=2)) as slurm:
        conf = slurm.conf_path
        job_id = await sbatch(slurm.env, "--output=/dev/null", "--wrap=sleep 300")
        await wait_for_state(slurm.env, job_id, "RUNNING")
        # slurmctld says RUNNING before the node has started the job's slurmstepd.
        with trio.fail_after(JOB_TIMEOUT):
            while True:
                running = processes_of(root, conf)
                if any(cmd.startswith("slurmstepd") for cmd in running.values()):
                    break
                await trio.sleep(0.1)
        names = sorted(cmd.split()[0].rsplit("/", 1)[-1] for cmd in running.values())
        assert names[:4] == ["munged", "slurmctld", "slurmd", "slurmd"]
    assert processes_of(root, conf) == {}


async def test_restart_on_the_same_root_keeps_job_records(tmp_path: Path) -> None:
    settings = PrivateSlurmSettings(root=tmp_path / "slurm")
    async with private_slurm(settings) as slurm:
        first = await sbatch(slurm.env, "--output=/dev/null", "--wrap=true")
        await wait_for_state(slurm.env, first, "COMPLETED")
    async with private_slurm(settings) as slurm:
        assert await wait_for_state(slurm.env, first, "COMPLETED") == "COMPLETED"
        second = await sbatch(slurm.env, "--output=/dev/null", "--wrap=true")
        assert int(second) > int(first)
    assert (tmp_path / "slurm" / "log" / "slurmctld.log.1").exists()


async def test_slurmctld_that_cannot_bind_its_port_is_a_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "slurm"
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        real_free_ports = cluster._free_ports
        monkeypatch.setattr(cluster, "_free_ports", lambda n: [port, *real_free_ports(n - 1)])
        with pytest.RaisesGroup(
            pytest.RaisesExc(
                StartupError,
                match=r"(?s)^slurmctld exited with code 1.*"
                r"Address already in use.*" + f"Check that port {port} is free",
            ),
        ):
            await serve_private_slurm(PrivateSlurmSettings(root=root))
    assert processes_of(root, root / "slurm.conf") == {}


async def test_a_daemon_that_dies_later_is_a_startup_error(tmp_path: Path) -> None:
    root = tmp_path / "slurm"
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            StartupError, match=r"^slurmd n1 was killed by SIGKILL after it was ready; last lines"
        ),
        flatten_subgroups=True,
    ):
        async with private_slurm(PrivateSlurmSettings(root=root)) as slurm:
            running = processes_of(root, slurm.conf_path)
            os.kill(next(p for p, cmd in running.items() if cmd.startswith("slurmd ")), SIGKILL)
            await trio.sleep_forever()
    assert processes_of(root, root / "slurm.conf") == {}


async def test_cancelled_during_startup_leaves_no_process_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_idle(env: Mapping[str, str], node: str) -> str:
        return f"sinfo says {node} is down*"

    monkeypatch.setattr(cluster, "_node_idle", never_idle)
    root = tmp_path / "slurm"
    with trio.move_on_after(1.5) as startup:  # munged, slurmctld and both slurmds run by then
        await serve_private_slurm(PrivateSlurmSettings(root=root, nodes=2))
    assert startup.cancelled_caught
    assert processes_of(root, root / "slurm.conf") == {}


async def test_missing_binaries_are_a_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.RaisesGroup(pytest.RaisesExc(StartupError, match="munged could not be started")):
        await serve_private_slurm(PrivateSlurmSettings(root=tmp_path / "slurm"))


async def test_nodes_that_never_get_idle_are_a_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_idle(env: Mapping[str, str], node: str) -> str:
        return f"sinfo says {node} is down*"

    monkeypatch.setattr(cluster, "_node_idle", never_idle)
    root = tmp_path / "slurm"
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            StartupError,
            match=r"^slurmd n1 was not ready within 2 s \(last check: "
            r"sinfo says n1 is down\*\); last lines of .*slurmd-n1.log",
        ),
    ):
        await serve_private_slurm(PrivateSlurmSettings(root=root, ready_timeout=2))
    assert processes_of(root, root / "slurm.conf") == {}


async def test_slurm_reachable_is_false_without_a_cluster(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=none\nSlurmctldHost=localhost\nSlurmctldPort=1\n")
    assert not await slurm_reachable({"SLURM_CONF": str(conf)})
    assert not await slurm_reachable({"PATH": str(tmp_path)})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("nodes", 0, "nodes must be at least 1"),
        ("cpus_per_node", 0, "cpus_per_node"),
        ("memory_mb_per_node", -1, "memory_mb_per_node"),
        ("partition", "de bug", "partition"),
    ],
)
def test_impossible_settings_are_config_errors(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        PrivateSlurmSettings(root=tmp_path, **{field: value})  # type: ignore[arg-type]


def test_root_that_slurm_conf_cannot_hold_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="whitespace"):
        PrivateSlurmSettings(root=tmp_path / "my cluster")


def test_generated_conf_uses_its_own_munge_socket(tmp_path: Path) -> None:
    layout = cluster._prepare(PrivateSlurmSettings(root=tmp_path, nodes=2, partition="batch"))
    try:
        conf = layout.conf.read_text()
        assert f"AuthInfo=socket={layout.munge_socket}\n" in conf
        assert "PartitionName=batch Nodes=n1,n2 Default=YES MaxTime=INFINITE" in conf
        assert (layout.munge_key.stat().st_mode & 0o777) == 0o600
        assert len(str(layout.munge_socket)) < 108
    finally:
        cluster._clean_up(layout)


async def test_declared_gpus_schedule_gres_jobs(tmp_path: Path) -> None:
    settings = PrivateSlurmSettings(root=tmp_path / "slurm", gpus_per_node=2)
    async with private_slurm(settings) as slurm:
        node = await run(["scontrol", "show", "node", "--oneliner"], slurm.env)
        assert "Gres=gpu:2" in node
        job_id = await sbatch(slurm.env, "--output=/dev/null", "--gres=gpu:2", "--wrap=true")
        assert await wait_for_state(slurm.env, job_id, "COMPLETED", "FAILED") == "COMPLETED"
        job = await run(["scontrol", "show", "job", "--oneliner", job_id], slurm.env)
        assert "TresPerNode=gres:gpu:2" in job
        # More than the node has can never run: sbatch refuses it.
        refused = await trio.run_process(
            ["sbatch", "--gres=gpu:3", "--wrap=true"],
            env={**os.environ, **slurm.env},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert refused.returncode != 0


async def test_job_state_asks_for_one_job(tmp_path: Path) -> None:
    from mobius.slurm.commands import SlurmClient

    async with private_slurm(PrivateSlurmSettings(root=tmp_path / "slurm")) as slurm:
        client = SlurmClient(env=slurm.env)
        job_id = await sbatch(slurm.env, "--output=/dev/null", "--wrap=sleep 30")
        other = await sbatch(slurm.env, "--output=/dev/null", "--wrap=true")
        await wait_for_state(slurm.env, job_id, "RUNNING")
        assert await client.job_state(job_id) == "RUNNING"
        assert await wait_for_state(slurm.env, other, "COMPLETED") == "COMPLETED"
        assert await client.job_state(other) == "COMPLETED"
        assert await client.job_state("999999") is None  # never existed / left the queue
        await run(["scancel", job_id], slurm.env)
        await wait_for_state(slurm.env, job_id, "CANCELLED")
        assert await client.job_state(job_id) == "CANCELLED"
