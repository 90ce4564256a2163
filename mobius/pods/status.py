"""Slurm job state + the job's control files -> the pod status Kubernetes should show.

Pure: the poller gathers the facts (the squeue row, the control files, the clock) and this module
decides. A pod never stays Pending or Running once its job has ended.

Slurm states (squeue ``%T``) fall into three groups:

* waiting: PENDING, CONFIGURING, REQUEUED, REQUEUE_HOLD, REQUEUE_FED, RESV_DEL_HOLD, SUSPENDED
  (suspended jobs keep their pod Running: the containers exist but are stopped);
* running: RUNNING, COMPLETING, STAGE_OUT, SIGNALING, RESIZING;
* ended: COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, BOOT_FAIL,
  DEADLINE, SPECIAL_EXIT, REVOKED.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mobius.models import Container, Pod
from mobius.pods.images import WAITING_REASONS as IMAGE_WAITING_REASONS
from mobius.pods.images import image_waiting
from mobius.pods.probes import started_and_ready
from mobius.pods.records import ContainerRecord, PodRecord

WAITING = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
)
RUNNING = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "SUSPENDED"})
ENDED = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "SPECIAL_EXIT",
        "REVOKED",
    }
)

# Why a pod failed when its job ended before its containers said so themselves.
_ENDED_REASON = {
    "CANCELLED": ("SlurmJobCancelled", "the Slurm job was cancelled"),
    "TIMEOUT": ("DeadlineExceeded", "the Slurm job reached its time limit"),
    "DEADLINE": ("DeadlineExceeded", "the Slurm job reached its deadline"),
    "OUT_OF_MEMORY": ("OOMKilled", "the Slurm job ran out of memory"),
    "NODE_FAIL": ("NodeLost", "the Slurm node running the job failed"),
    "PREEMPTED": ("Preempted", "the Slurm job was preempted"),
    "BOOT_FAIL": ("SlurmBootFailed", "the Slurm node failed to boot for the job"),
    "FAILED": ("SlurmJobFailed", "the Slurm job failed"),
    "COMPLETED": ("ContainersNotRun", "the Slurm job ended before its containers reported"),
    "SPECIAL_EXIT": ("SlurmJobFailed", "the Slurm job ended in SPECIAL_EXIT"),
    "REVOKED": ("SlurmJobRevoked", "the Slurm job was revoked by a sibling cluster"),
}


# Ended states in which Slurm, not the containers, decided that the job ends.
_SLURM_ENDED_IT = frozenset(_ENDED_REASON) - {"COMPLETED", "FAILED"}


class JobView(msgspec.Struct, frozen=True):
    """What squeue said about the pod's job this tick (None in the caller when it is gone)."""

    job_id: str
    state: str
    reason: str = ""
    nodes: str = ""


def _condition(
    kind: str,
    ok: bool,
    previous: dict[str, dict[str, Any]],
    now: str,
    reason: str | None = None,
    message: str | None = None,
    at: str | None = None,
) -> dict[str, Any]:
    """A pod condition; its transition time is kept while the status stays, else ``at`` (when
    the job's records say it happened) or ``now``."""
    status = "True" if ok else "False"
    old = previous.get(kind)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    cond: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or at or now,
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _previous_run(code: int, finished_at: str | None) -> dict[str, Any]:
    """A ``lastState``: how the run before the current one ended."""
    term: dict[str, Any] = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
    if finished_at:
        term["finishedAt"] = finished_at
    return {"terminated": term}


def _container_status(
    c: Container,
    rec: ContainerRecord | None,
    *,
    ended_reason: str | None,
    waiting_reason: str,
    waiting_message: str | None,
    job_ended: bool,
    restart_policy: str = "Never",
) -> dict[str, Any]:
    st: dict[str, Any] = {
        "name": c.name,
        "image": c.image,
        "imageID": "",
        "ready": False,
        "restartCount": rec.restarts if rec else 0,
        "started": False,
    }
    if (
        rec is not None
        and rec.exit_code is not None
        and (job_ended or rec.started_at is None or (rec.finished_at or "") >= rec.started_at)
    ):
        code = rec.exit_code
        reason = "Completed" if code == 0 else "Error"
        if code == 137 and ended_reason == "OOMKilled":
            reason = "OOMKilled"
        term: dict[str, Any] = {"exitCode": code, "reason": reason}
        if rec.started_at:
            term["startedAt"] = rec.started_at
        if rec.finished_at:
            term["finishedAt"] = rec.finished_at
        restarts = restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0)
        if restarts and not job_ended:
            # Between runs: the job script restarts it after a back-off, as the kubelet does.
            st["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting failed container {c.name}",
                }
            }
            st["lastState"] = {"terminated": term}
        else:
            st["state"] = {"terminated": term}
            if rec.restarts and rec.last_exit_code is not None:
                st["lastState"] = _previous_run(rec.last_exit_code, rec.last_finished_at)
    elif rec is not None and rec.started_at and rec.pid_seen and not job_ended:
        # Running once the runtime has started the process (its PID file), not while it is
        # still creating the container: exec and probes can reach it from then on.
        st["state"] = {"running": {"startedAt": rec.started_at}}
        # Probes and postStart hooks decide (mobius.pods.probes); without them, running is both.
        st["started"], st["ready"] = started_and_ready(c, rec)
        if rec.exit_code is not None:  # the run before this restart
            st["lastState"] = _previous_run(rec.exit_code, rec.finished_at)
    elif job_ended:
        term = {
            "exitCode": 137 if ended_reason == "OOMKilled" else 1,
            "reason": ended_reason or "Error",
        }
        if rec is not None and rec.started_at:
            term["startedAt"] = rec.started_at
        st["state"] = {"terminated": term}
    else:
        waiting: dict[str, Any] = {"reason": waiting_reason}
        if waiting_message:
            waiting["message"] = waiting_message
        # ErrImagePull, ImagePullBackOff, ErrImageNeverPull (mobius.pods.images).
        st["state"] = {"waiting": image_waiting(c, rec.pull if rec else None) or waiting}
    return st


def pod_status(
    pod: Pod,
    *,
    job: JobView | None,
    record: PodRecord,
    submitted: bool,
    now: str,
    host_ip: str | None = None,
) -> dict[str, Any]:
    """The full ``status`` Mobius writes for ``pod``.

    ``job`` is None when the pod's job is not (or no longer) in squeue; ``submitted`` says whether
    a job was ever submitted, to tell "not yet" from "vanished".
    """
    previous = {c.get("type", ""): c for c in pod.status.conditions}
    spec = pod.spec
    state = job.state if job else None
    containers = spec.containers
    recs = record.containers
    app_exits = [recs[c.name].exit_code if c.name in recs else None for c in containers]
    all_exited = bool(containers) and all(code is not None for code in app_exits)
    vanished = submitted and job is None
    job_ended = state in ENDED or vanished

    phase = "Pending"
    reason: str | None = None
    message: str | None = None
    ended_reason: str | None = None
    if all_exited and (
        spec.restart_policy == "Never"
        or job_ended
        or (spec.restart_policy == "OnFailure" and all(code == 0 for code in app_exits))
    ):
        phase = "Succeeded" if all(code == 0 for code in app_exits) else "Failed"
        if record.stopped_by == "slurm" and job is not None and not job_ended:
            # Slurm warned the job (time limit, preemption): its verdict is still to come.
            phase = "Running"
        if phase == "Failed" and job is not None and state in _SLURM_ENDED_IT:
            # The containers exited because Slurm stopped the job (time limit, preemption...).
            reason, message = _ENDED_REASON[state]
            message = f"{message} (job {job.job_id})"
    elif job_ended:
        phase = "Failed"
        if vanished:
            ended_reason, message = (
                "SlurmJobLost",
                "the Slurm job left the queue without a record of how it ended",
            )
        else:
            ended_reason, message = _ENDED_REASON.get(
                state or "", ("SlurmJobFailed", f"the Slurm job ended in {state}")
            )
        reason = ended_reason
        if job is not None:
            message = f"{message} (job {job.job_id})"
    elif state in RUNNING:
        phase = "Running"
    elif state in WAITING or state is None:
        phase = "Pending"
    else:
        phase = "Pending"
        message = f"unknown Slurm job state {state!r}"

    waiting_reason = "ContainerCreating"
    waiting_message: str | None = None
    if state in WAITING and job is not None:
        waiting_reason = "SlurmJobPending"
        waiting_message = f"Slurm job {job.job_id} is {state}"
        if job.reason and job.reason not in ("None", "(null)"):
            waiting_message += f" ({job.reason})"
        message = waiting_message

    statuses = [
        _container_status(
            c,
            recs.get(c.name),
            ended_reason=ended_reason,
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            job_ended=job_ended or phase in ("Succeeded", "Failed"),
            restart_policy=spec.restart_policy,
        )
        for c in containers
    ]
    init_statuses = [
        _container_status(
            c,
            recs.get(c.name),
            ended_reason=ended_reason,
            waiting_reason="PodInitializing",
            waiting_message=None,
            job_ended=True
            if recs.get(c.name, ContainerRecord()).exit_code is not None
            else job_ended,
        )
        for c in spec.init_containers
    ]
    init_failed = any(
        (rec := recs.get(c.name)) is not None and rec.exit_code not in (None, 0)
        for c in spec.init_containers
    )
    if init_failed:
        # As the kubelet shows Init:Error: what never started behind the failed init container
        # is still waiting, not terminated.
        for st in (*init_statuses, *statuses):
            rec = recs.get(st["name"])
            if rec is None or rec.started_at is None:
                st["state"] = {"waiting": {"reason": "PodInitializing"}}
    if phase == "Running" and any(
        st["state"].get("waiting", {}).get("reason") in IMAGE_WAITING_REASONS
        for st in (*init_statuses, *statuses)
    ):
        phase = "Pending"  # as for the kubelet: a container that never started waits
    running = phase == "Running"
    all_ready = running and all(s["ready"] for s in statuses)
    started = record.started_at is not None
    not_ready_reason = (
        None
        if all_ready
        else ("PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady")
    )
    starts = [r.started_at for r in recs.values() if r.started_at]
    ends = [r.finished_at for r in recs.values() if r.finished_at]
    starts += [r.ready_at for r in recs.values() if r.ready and r.ready_at]
    ends += [r.ready_at for r in recs.values() if r.ready is False and r.ready_at]
    unready = [s["name"] for s in statuses if not s["ready"]]
    not_ready_message = (
        f"containers with unready status: [{' '.join(unready)}]"
        if not_ready_reason == "ContainersNotReady" and unready
        else None
    )
    ready_at = (
        max(starts) if all_ready and starts else max(ends) if not all_ready and ends else None
    )
    conditions = [
        _condition("PodScheduled", True, previous, now),
        _condition(
            "Initialized",
            started or phase in ("Succeeded", "Failed"),
            previous,
            now,
            at=record.started_at,
        ),
        *(
            _condition(
                kind,
                all_ready,
                previous,
                now,
                reason=not_ready_reason,
                message=not_ready_message,
                at=ready_at,
            )
            for kind in ("ContainersReady", "Ready")
        ),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": statuses,
        "startTime": pod.status.start_time or now,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if record.pod_ip:
        status["podIP"] = record.pod_ip
        status["podIPs"] = [{"ip": record.pod_ip}]
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    return status
