"""Slurm state + control files -> pod status: every Slurm state ends somewhere sensible."""

from __future__ import annotations

import msgspec
import pytest

from mobius.models import Pod
from mobius.pods.records import pod_record
from mobius.pods.status import ENDED, RUNNING, WAITING, JobView, pod_status

NOW = "2026-01-01T00:00:10Z"


def pod(restart: str = "Never") -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]},
        },
        Pod,
    )


def status(
    state: str | None,
    files: dict[str, str] | None = None,
    *,
    submitted: bool = True,
    restart: str = "Never",
) -> dict:
    job = JobView(job_id="7", state=state, reason="Priority") if state else None
    return pod_status(
        pod(restart), job=job, record=pod_record(files or {}), submitted=submitted, now=NOW
    )


def test_pending_job_keeps_pod_pending_with_reason() -> None:
    st = status("PENDING")
    assert st["phase"] == "Pending"
    assert "Slurm job 7 is PENDING (Priority)" in st["message"]
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "SlurmJobPending"


def test_running_container() -> None:
    creating = status("RUNNING", {"pod.ip": "10.0.0.2", "pod.started": NOW, "c/c.started": NOW})
    # Until the runtime has started the process (its PID file), the container is being created.
    assert creating["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    st = status(
        "RUNNING",
        {"pod.ip": "10.0.0.2", "pod.started": NOW, "c/c.started": NOW, "c/c.pid": "4242"},
    )
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.0.0.2"
    assert st["containerStatuses"][0]["state"] == {"running": {"startedAt": NOW}}
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"


@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (3, "Failed")])
def test_exit_codes_decide_the_phase(code: int, phase: str) -> None:
    files = {"pod.started": NOW, "c/c.started": NOW, "c/c.exit": f"{code} {NOW}"}
    for state in ("RUNNING", "COMPLETING", "COMPLETED", "FAILED", None):
        st = status(state, files)
        assert st["phase"] == phase, state
        term = st["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == code
        assert term["reason"] == ("Completed" if code == 0 else "Error")


@pytest.mark.parametrize("state", sorted(ENDED))
def test_an_ended_job_never_leaves_the_pod_pending_or_running(state: str) -> None:
    st = status(state, {"c/c.started": NOW})
    assert st["phase"] in ("Succeeded", "Failed")
    assert "terminated" in st["containerStatuses"][0]["state"]


@pytest.mark.parametrize("state", sorted(WAITING | RUNNING))
def test_live_states(state: str) -> None:
    assert status(state)["phase"] in ("Pending", "Running")


def test_vanished_job_fails_the_pod() -> None:
    st = status(None, submitted=True)
    assert st["phase"] == "Failed"
    assert st["reason"] == "SlurmJobLost"


def test_not_yet_submitted_is_pending() -> None:
    assert status(None, submitted=False)["phase"] == "Pending"


def test_timeout_and_oom_reasons() -> None:
    assert status("TIMEOUT")["reason"] == "DeadlineExceeded"
    oom = status("OUT_OF_MEMORY", {"c/c.started": NOW})
    assert oom["reason"] == "OOMKilled"
    assert oom["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"


def test_restart_always_keeps_running_after_exit() -> None:
    files = {"pod.started": NOW, "c/c.started": NOW, "c/c.exit": f"1 {NOW}", "c/c.restarts": "2"}
    st = status("RUNNING", files, restart="Always")
    assert st["phase"] == "Running"
    assert st["containerStatuses"][0]["restartCount"] == 2


def test_slurm_warning_signal_waits_for_slurms_verdict() -> None:
    files = {
        "pod.started": NOW,
        "c/c.started": NOW,
        "c/c.exit": f"143 {NOW}",
        "stopping": f"{NOW} slurm",
    }
    waiting = status("RUNNING", files)
    assert waiting["phase"] == "Running"
    assert waiting["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    ended = status("TIMEOUT", files)
    assert ended["phase"] == "Failed"
    assert ended["reason"] == "DeadlineExceeded"
    assert "(job 7)" in ended["message"]


def test_kubelet_stop_does_not_wait() -> None:
    files = {
        "pod.started": NOW,
        "c/c.started": NOW,
        "c/c.exit": f"0 {NOW}",
        "stopping": f"{NOW} kubelet",
    }
    assert status("RUNNING", files)["phase"] == "Succeeded"


def test_crash_loop_between_restarts_and_last_state_after() -> None:
    files = {
        "pod.started": NOW,
        "c/c.started": "2026-01-01T00:00:01Z",
        "c/c.exit": "2 2026-01-01T00:00:02Z",
        "c/c.restarts": "1",
    }
    backoff = status("RUNNING", files, restart="Always")
    (cs,) = backoff["containerStatuses"]
    assert backoff["phase"] == "Running"
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert cs["ready"] is False
    rerun = status(
        "RUNNING",
        {**files, "c/c.started": "2026-01-01T00:00:12Z", "c/c.pid": "4242"},
        restart="Always",
    )
    (cs,) = rerun["containerStatuses"]
    assert cs["state"] == {"running": {"startedAt": "2026-01-01T00:00:12Z"}}
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert cs["restartCount"] == 1


def test_on_failure_success_is_final() -> None:
    files = {"pod.started": NOW, "c/c.started": NOW, "c/c.exit": f"0 {NOW}"}
    assert status("RUNNING", files, restart="OnFailure")["phase"] == "Succeeded"


def test_a_failed_init_container_leaves_what_follows_waiting() -> None:
    p = msgspec.convert(
        {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": "i1", "image": "b"}, {"name": "i2", "image": "b"}],
                "containers": [{"name": "c", "image": "b"}],
            },
        },
        Pod,
    )
    files = {"pod.started": NOW, "c/i1.started": NOW, "c/i1.exit": f"4 {NOW}"}
    st = pod_status(
        p,
        job=JobView(job_id="7", state="FAILED", reason="NonZeroExitCode"),
        record=pod_record(files),
        submitted=True,
        now=NOW,
    )
    assert st["phase"] == "Failed"
    i1, i2 = st["initContainerStatuses"]
    assert i1["state"]["terminated"]["exitCode"] == 4
    assert i2["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


def test_a_container_that_restarted_then_succeeded_keeps_its_last_state() -> None:
    files = {
        "pod.started": NOW,
        "c/c.started": NOW,
        "c/c.exit": f"0 {NOW}",
        "c/c.last": "1 2026-01-01T00:00:05Z",
        "c/c.restarts": "2",
    }
    st = status("COMPLETED", files, restart="OnFailure")
    (c,) = st["containerStatuses"]
    assert c["restartCount"] == 2
    assert c["state"]["terminated"]["exitCode"] == 0
    assert c["lastState"] == {
        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T00:00:05Z"}
    }
