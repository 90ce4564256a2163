"""The status poller: one squeue per tick, work only where something moved, same verdicts.

A fake Slurm hands the poller the rows of each tick (and counts its squeue calls); pods live in
a real temporary state directory whose control files are written as the job script writes them
(temp file, then rename). Folder mtimes are then pinned to old, distinct times: a folder whose
mtime is within a second of the read is read again (see ``RACY_NS``), and the autojump clock
does not move the wall clock.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from mobius._fast import SqueueRow
from mobius.errors import SlurmCommandError
from mobius.models import Pod
from mobius.pods.probes import ContainerEvent
from mobius.pods.script import job_name
from mobius.pods.status import WAITING
from mobius.slurm.polling import (
    StatusPoller,
    StatusUpdate,
    fingerprint,
    read_ctl,
    serve_status_poller,
)
from mobius.state import Job, JobTable, PodPaths, PodStore
from tests.slurm.naive_poller import naive_statuses

_mtimes = itertools.count(1_000_000)  # seconds since the epoch: long ago, never twice the same


def make_pod(uid: str, *, version: str = "1", containers: tuple[str, ...] = ("app",)) -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": f"p-{uid}", "namespace": "ns", "uid": uid,
                         "resourceVersion": version},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": c, "image": "busybox"} for c in containers]},
            "status": {"phase": "Pending"},
        },
        Pod,
    )


def row(uid: str, state: str = "PENDING", *, job_id: str = "", reason: str = "Priority",
        nodes: str = "") -> SqueueRow:
    return SqueueRow(job_id or f"1{uid[-4:]}", state, reason, "N/A", "N/A", nodes, job_name(uid))


class FakeSlurm:
    """``squeue()`` returns the rows the test handed over for this tick, and counts the calls.

    The poller's next squeue call is the test's sign that the tick before it is done.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.ticks = 0  # rows handed over so far
        self._send, self._receive = trio.open_memory_channel[list[SqueueRow]](0)
        self._called = trio.Condition()
        self.during_call: Callable[[], None] | None = None

    async def squeue(self) -> list[SqueueRow]:
        async with self._called:
            self.calls += 1
            self._called.notify_all()
        rows = await self._receive.receive()
        await trio.sleep(0.25)  # squeue takes a while: jobs may be submitted meanwhile
        if self.during_call is not None:
            self.during_call()
            self.during_call = None
        return rows

    async def tick(self, rows: list[SqueueRow]) -> None:
        """Run one tick over ``rows`` and wait until it is done (the next squeue call)."""
        await self._send.send(rows)
        self.ticks += 1
        async with self._called:
            while self.calls <= self.ticks:
                await self._called.wait()


class Kubelet:
    """What the poller shares with the other tasks, over a real temporary state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.store = PodStore()
        self.jobs = JobTable()
        self.paths = PodPaths(state_dir)
        self.slurm = FakeSlurm()
        self.updates: trio.MemoryReceiveChannel[StatusUpdate] | None = None

    def add(self, uid: str, *, submitted_at: float = -1.0, **pod: Any) -> None:
        self.store.put(make_pod(uid, **pod))
        self.jobs.set(uid, Job(job_id=f"1{uid[-4:]}", submitted_at=submitted_at))

    def put(self, uid: str, name: str, content: str) -> None:
        """Write ``ctl/<name>`` as the job script does, then pin the mtime of the folders it
        changed (see top): ``ctl/c`` for container files, ``ctl`` for pod files."""
        ctl = self.paths.ctl_dir(uid)
        changed = [] if (ctl / "c").is_dir() else [ctl, ctl / "c"]
        (ctl / "c").mkdir(parents=True, exist_ok=True)
        (ctl / f"{name}.tmp").write_text(content + "\n")
        os.replace(ctl / f"{name}.tmp", ctl / name)
        for folder in changed or [ctl / "c" if name.startswith("c/") else ctl]:
            when = next(_mtimes)
            os.utime(folder, (when, when))

    def received(self) -> list[StatusUpdate]:
        assert self.updates is not None
        out = []
        while True:
            try:
                out.append(self.updates.receive_nowait())
            except trio.WouldBlock:
                return out


@pytest.fixture
async def kubelet(tmp_path: Path) -> AsyncIterator[Kubelet]:
    k = Kubelet(tmp_path)
    send, k.updates = trio.open_memory_channel[StatusUpdate](math.inf)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_status_poller(
                k.slurm, store=k.store, jobs=k.jobs, paths=k.paths, updates=send,
                interval=1.0, host_ip="10.0.0.1",
            )
        )
        yield k
        nursery.cancel_scope.cancel()


def phases(updates: list[StatusUpdate]) -> dict[str, str]:
    return {uid: status["phase"] for uid, status in updates}


def uids(n: int) -> list[str]:
    return [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)]


# --- through serve_status_poller ---------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 500])
async def test_one_squeue_call_per_tick_whatever_the_number_of_pods(
    autojump_clock: trio.testing.MockClock, kubelet: Kubelet, n: int
) -> None:
    pods = uids(n)
    for uid in pods:
        kubelet.add(uid)
    rows = [row(uid) for uid in pods]
    for tick in range(1, 4):
        await kubelet.slurm.tick(rows)
        assert kubelet.slurm.calls == tick + 1  # this tick's, and the next one's, now waiting
    updates = kubelet.received()
    assert len(updates) == n  # the first tick's; the others changed nothing
    assert set(phases(updates).values()) == {"Pending"}


async def test_unchanged_pods_produce_no_update(
    autojump_clock: trio.testing.MockClock, kubelet: Kubelet
) -> None:
    running, waiting = uids(2)
    kubelet.add(running)
    kubelet.add(waiting)
    kubelet.put(running, "pod.started", "2026-01-01T00:00:00Z")
    kubelet.put(running, "c/app.started", "2026-01-01T00:00:01Z")
    rows = [row(running, "RUNNING", reason="None", nodes="n1"), row(waiting)]
    await kubelet.slurm.tick(rows)
    assert phases(kubelet.received()) == {running: "Running", waiting: "Pending"}
    for _ in range(3):
        await kubelet.slurm.tick([row(running, "RUNNING", reason="None", nodes="n1"),
                                  row(waiting)])
        assert kubelet.received() == []


async def test_a_changed_control_file_produces_exactly_one_update(
    autojump_clock: trio.testing.MockClock, kubelet: Kubelet
) -> None:
    a, b = uids(2)
    for uid in (a, b):
        kubelet.add(uid)
        kubelet.put(uid, "c/app.started", "2026-01-01T00:00:01Z")
    rows = [row(uid, "RUNNING", reason="None", nodes="n1") for uid in (a, b)]
    await kubelet.slurm.tick(rows)
    assert len(kubelet.received()) == 2
    kubelet.put(b, "c/app.exit", "0 2026-01-01T00:00:05Z")
    await kubelet.slurm.tick(rows)
    (update,) = kubelet.received()
    assert update[0] == b
    assert update[1]["phase"] == "Succeeded"
    await kubelet.slurm.tick(rows)
    assert kubelet.received() == []


async def test_a_changed_state_produces_exactly_one_update(
    autojump_clock: trio.testing.MockClock, kubelet: Kubelet
) -> None:
    a, b, c = uids(3)
    for uid in (a, b, c):
        kubelet.add(uid)
    await kubelet.slurm.tick([row(a), row(b), row(c)])
    assert len(kubelet.received()) == 3
    kubelet.put(b, "c/app.started", "2026-01-01T00:00:01Z")  # the job starts, and so does app
    await kubelet.slurm.tick([row(a), row(b, "RUNNING", reason="None", nodes="n1"), row(c)])
    assert phases(kubelet.received()) == {b: "Running"}
    # A new pending reason is a new message; a new start estimate alone changes nothing.
    await kubelet.slurm.tick([row(a, reason="Resources"), row(b, "RUNNING", reason="None",
                                                              nodes="n1"), row(c)])
    assert phases(kubelet.received()) == {a: "Pending"}


async def test_vanished_jobs_fail_unless_submitted_during_the_tick(
    autojump_clock: trio.testing.MockClock, kubelet: Kubelet
) -> None:
    listed, lost = uids(2)
    kubelet.add(listed)
    kubelet.add(lost)  # submitted before the first squeue call
    await kubelet.slurm.tick([row(listed), row(lost)])
    assert phases(kubelet.received()) == {listed: "Pending", lost: "Pending"}

    late = "00000000-0000-4000-8000-00000000late"

    def submit_late() -> None:  # while squeue runs: after it began, so not in its output
        kubelet.add(late, submitted_at=trio.current_time())

    kubelet.slurm.during_call = submit_late
    await kubelet.slurm.tick([row(listed)])
    updates = kubelet.received()
    assert phases(updates) == {lost: "Failed", late: "Pending"}
    assert dict(updates)[lost]["reason"] == "SlurmJobLost"
    # Next tick the late job was submitted before squeue began: missing now means lost.
    await kubelet.slurm.tick([row(listed)])
    assert phases(kubelet.received()) == {late: "Failed"}


async def test_squeue_failure_keeps_statuses_and_polls_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    class Flaky:
        calls = 0
        fourth = trio.Event()

        async def squeue(self) -> list[SqueueRow]:
            self.calls += 1
            if self.calls == 2:
                raise SlurmCommandError(["squeue"], 1, "slurmctld down")
            if self.calls == 4:
                self.fourth.set()
                await trio.sleep_forever()
            return [row(uid)]

    k = Kubelet(tmp_path)
    (uid,) = uids(1)
    k.add(uid)
    send, receive = trio.open_memory_channel[StatusUpdate](math.inf)
    slurm = Flaky()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_status_poller(
                slurm, store=k.store, jobs=k.jobs, paths=k.paths, updates=send, interval=1.0
            )
        )
        await slurm.fourth.wait()
        nursery.cancel_scope.cancel()
    assert [u for u, _ in [receive.receive_nowait()]] == [uid]  # once, before the failure
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()


# --- StatusPoller.tick: what a tick looks at ---------------------------------------------------


async def test_waiting_jobs_cost_no_syscall_and_running_ones_a_stat(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    pods = uids(30)
    for uid in pods:
        k.add(uid)
    running = pods[:10]
    for uid in running:
        k.put(uid, "c/app.started", "2026-01-01T00:00:01Z")
    poller = StatusPoller(store=k.store, jobs=k.jobs, paths=k.paths)
    rows = [row(uid, "RUNNING" if uid in running else "PENDING") for uid in pods]
    assert len(await poller.tick(rows, began=1.0)) == 30
    assert (poller.last.stat, poller.last.read, poller.last.computed) == (30, 30, 30)
    assert await poller.tick(rows, began=2.0) == []
    assert (poller.last.stat, poller.last.read, poller.last.computed) == (10, 0, 0)
    k.put(running[3], "c/app.exit", "1 2026-01-01T00:00:09Z")
    k.store.put(make_pod(pods[20], version="2"))  # the watch saw a new version of a waiting pod
    updates = await poller.tick(rows, began=3.0)
    assert (poller.last.stat, poller.last.read, poller.last.computed) == (10, 1, 2)
    assert phases(updates) == {running[3]: "Failed"}


async def test_forgotten_and_final_pods_are_left_alone(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    a, b, c = uids(3)
    for uid in (a, b, c):
        k.add(uid)
    poller = StatusPoller(store=k.store, jobs=k.jobs, paths=k.paths)
    assert len(await poller.tick([row(a), row(b), row(c)], began=1.0)) == 3
    k.jobs.forget(a)
    done = make_pod(b, version="2")
    done.status.phase = "Succeeded"
    k.store.put(done)
    updates = await poller.tick([], began=2.0)
    assert phases(updates) == {c: "Failed"}
    assert poller.last.live_pods == 1
    assert repr(poller).startswith("<StatusPoller 2 pods")


async def test_read_ctl_skips_temp_files(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    (uid,) = uids(1)
    k.put(uid, "node", "n1")
    k.put(uid, "c/app.restarts", "2")
    (k.paths.ctl_dir(uid) / "c" / "app.exit.tmp").write_text("0 x")
    assert read_ctl(k.paths.ctl_dir(uid)) == {"node": "n1\n", "c/app.restarts": "2\n"}
    assert read_ctl(tmp_path / "missing") == {}


# --- the same writes as the naive poller that recomputed every pod on every tick --------------


def naive_tick(
    k: Kubelet, rows: list[SqueueRow], sent: dict[str, bytes], began: float
) -> list[tuple[str, bytes]]:
    """The previous poller's tick: every live pod's files read and its status recomputed."""
    return [(uid, fingerprint(status))
            for uid, status in naive_statuses(k.store, k.jobs, k.paths, rows, sent, began)]


_STATES = ["PENDING", "PENDING", "RUNNING", "RUNNING", "COMPLETING", "COMPLETED", "FAILED",
           "SUSPENDED", "REQUEUED", None]


@pytest.mark.parametrize("seed", range(6))
async def test_same_updates_as_the_naive_poller(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    k = Kubelet(tmp_path)
    pods = uids(40)
    state: dict[str, str | None] = {}
    started: set[str] = set()  # pods whose run wrote its pod files (node, pod.ip, pod.started)
    for uid in pods[:30]:
        k.add(uid, containers=("app", "side"))
        state[uid] = "PENDING"
    poller = StatusPoller(store=k.store, jobs=k.jobs, paths=k.paths)
    sent: dict[str, bytes] = {}
    versions = itertools.count(2)
    for tick in range(1, 25):
        for uid in rng.sample(pods, 6):
            what = rng.randrange(7)
            if uid not in state:  # a new pod, maybe submitted while squeue runs
                k.add(uid, submitted_at=tick + rng.choice((-0.5, 0.0, 0.5)))
                state[uid] = rng.choice(("PENDING", None))
            elif what == 0:
                state[uid] = rng.choice(_STATES)
                started.discard(uid)  # a new run, maybe (requeued)
            elif what in (1, 2, 3) and state[uid] in WAITING:
                continue  # the job script writes control files only while its job runs
            elif what == 1:
                k.put(uid, f"c/{rng.choice(('app', 'side'))}.started", f"2026-01-01T00:00:{tick:02d}Z")
            elif what == 2:
                code = rng.choice((0, 0, 1, 137))
                k.put(uid, f"c/{rng.choice(('app', 'side'))}.exit", f"{code} 2026-01-01T00:01:{tick:02d}Z")
            elif what == 3 and uid not in started:  # once per run, pod.started last
                for name in [*rng.sample(["node", "pod.ip"], rng.randrange(3)), "pod.started"]:
                    k.put(uid, name, f"v{tick}")
                started.add(uid)
            elif what == 4:
                k.store.put(make_pod(uid, version=str(next(versions)), containers=("app", "side")))
            elif what == 5:
                k.jobs.set(uid, Job(job_id="", error="sbatch: invalid", reason="SlurmRefused"))
            elif rng.random() < 0.3:
                k.jobs.forget(uid)
                del state[uid]
        rows = [row(uid, s, nodes="n1" if s != "PENDING" else "")
                for uid, s in state.items() if s is not None]
        rng.shuffle(rows)
        expected = naive_tick(k, rows, sent, float(tick))
        got = [(uid, fingerprint(status)) for uid, status in await poller.tick(rows, began=float(tick))]
        assert got == expected, tick


async def test_accounting_tells_how_a_vanished_job_ended(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    done, cancelled, unknown, listed = uids(4)
    for uid in (done, cancelled, unknown, listed):
        k.add(uid)
    asked: list[list[str]] = []

    async def sacct(job_ids: list[str]) -> dict[str, str]:
        asked.append(sorted(job_ids))
        return {f"1{done[-4:]}": "COMPLETED", f"1{cancelled[-4:]}": "CANCELLED"}

    poller = StatusPoller(store=k.store, jobs=k.jobs, paths=k.paths, accounting=sacct)
    await poller.tick([row(uid) for uid in (done, cancelled, unknown, listed)], began=1.0)
    updates = await poller.tick([row(listed, "RUNNING")], began=2.0)
    # ONE sacct call for every job that left squeue; the one still listed is not asked about.
    assert asked == [sorted(f"1{u[-4:]}" for u in (done, cancelled, unknown))]
    statuses = dict(updates)
    assert statuses[cancelled]["reason"] == "SlurmJobCancelled"
    assert statuses[done]["reason"] == "ContainersNotRun"  # COMPLETED, but no exit records
    assert statuses[unknown]["reason"] == "SlurmJobLost"
    assert statuses[listed]["phase"] == "Running"


async def test_failing_accounting_falls_back_to_control_files(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    (uid,) = uids(1)
    k.add(uid)
    k.put(uid, "c/app.started", "2026-01-01T00:00:01Z")
    k.put(uid, "c/app.exit", "0 2026-01-01T00:00:02Z")

    async def sacct(job_ids: list[str]) -> dict[str, str]:
        raise SlurmCommandError(["sacct"], 1, "Slurm accounting storage is disabled")

    poller = StatusPoller(store=k.store, jobs=k.jobs, paths=k.paths, accounting=sacct)
    updates = await poller.tick([], began=1.0)
    assert phases(updates) == {uid: "Succeeded"}


async def test_what_probes_and_hooks_report_becomes_events_once(tmp_path: Path) -> None:
    k = Kubelet(tmp_path)
    (uid,) = uids(1)
    k.add(uid)
    k.put(uid, "pod.started", "2026-01-01T00:00:00Z")
    k.put(uid, "c/app.started", "2026-01-01T00:00:01Z")
    # Written before this poller (a restarted kubelet) first read the folder: not news.
    k.put(uid, "c/app.probe", "2026-01-01T00:00:02Z Readiness probe failed: exit status 1")
    poller = StatusPoller(store=k.store, jobs=k.jobs, paths=k.paths)
    rows = [row(uid, "RUNNING", reason="None", nodes="n1")]
    await poller.tick(rows, began=1.0)
    assert poller.events == []
    k.put(uid, "c/app.probe", "2026-01-01T00:00:05Z Liveness probe failed: timed out after 1s")
    k.put(uid, "c/app.event", "2026-01-01T00:00:05Z Killing Container app failed liveness probe")
    await poller.tick(rows, began=2.0)
    assert poller.events == [
        (uid, ContainerEvent("app", "Warning", "Unhealthy", "Liveness probe failed: timed out after 1s")),
        (uid, ContainerEvent("app", "Normal", "Killing", "Container app failed liveness probe")),
    ]
    await poller.tick(rows, began=3.0)
    assert poller.events == []


async def test_image_steps_become_events_from_the_first_read(tmp_path: Path) -> None:
    """A job's image step writes from the job's start: a first read is news, unless the job
    was recovered after a restart (its past was reported before)."""
    k = Kubelet(tmp_path)
    fresh, recovered = uids(2)
    k.add(fresh)
    k.add(recovered, submitted_at=0.0)
    for uid in (fresh, recovered):
        k.put(uid, "pod.started", "2026-01-01T00:00:00Z")
        k.put(uid, "c/app.pull", "failed 1 2026-01-01T00:00:01Z Error: manifest unknown")
    poller = StatusPoller(store=k.store, jobs=k.jobs, paths=k.paths)
    rows = [row(uid, "RUNNING", reason="None", nodes="n1") for uid in (fresh, recovered)]
    updates = await poller.tick(rows, began=1.0)
    assert poller.events == [
        (fresh, ContainerEvent("app", "Normal", "Pulling", 'Pulling image "busybox"')),
        (fresh, ContainerEvent("app", "Warning", "Failed",
                               'Failed to pull image "busybox": Error: manifest unknown')),
    ]  # fmt: skip
    for _, status in updates:
        assert status["phase"] == "Pending"
        (c,) = status["containerStatuses"]
        assert c["state"]["waiting"]["reason"] == "ErrImagePull"
    k.put(recovered, "c/app.pull", "pulled 2 2026-01-01T00:00:12Z 1500000 1500000")
    await poller.tick(rows, began=2.0)
    assert poller.events == [
        (recovered, ContainerEvent("app", "Normal", "Pulled",
                                   'Successfully pulled image "busybox" in 1.5s')),
    ]  # fmt: skip
