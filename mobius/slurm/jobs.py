"""Pods -> Slurm jobs: submit new pods, cancel deleted ones, recover the mapping after restarts.

One task consumes pod UIDs from the watch and decides, per pod, what the job side must do:

* bound, not terminal, no job yet   -> render the script, ``sbatch`` (capped concurrency);
* being deleted                     -> signal the job, wait the grace period, cancel, then
                                       remove the pod object and its files;
* gone from the API                 -> cancel what is left and remove its files.

A pod whose spec cannot run gets a job entry with an error instead of a job id; the status
poller turns that into a Failed pod, and a Warning event tells the user what to change.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
from typing import Any, NoReturn

import msgspec
import trio

from mobius.errors import (
    ApiError,
    ApiUnreachable,
    Conflict,
    InvalidPodSpec,
    MissingReference,
    NotFound,
    ParseError,
    SlurmCommandError,
)
from mobius.kube.client import KubeClient
from mobius.kube.events import emit_event, rfc3339
from mobius.kube.refs import SharedCache, fetch_refs
from mobius.kube.volumes import request_tokens, write_volumes
from mobius.metrics import POD_FAILURES, PODS_SUBMITTED
from mobius.models import Container, Pod
from mobius.pods.dns import pod_resolv_conf
from mobius.pods.env import pod_warnings
from mobius.pods.images import auth_files, pull_auth
from mobius.pods.script import (
    DEFAULT_GRES_MAP,
    DEFAULT_STATS_INTERVAL,
    job_name,
    render_job,
    sandbox_name,
)
from mobius.pods.volumes import plan_volumes
from mobius.runtime.base import Runtime
from mobius.slurm.commands import SlurmClient
from mobius.state import Job, JobTable, PodPaths, PodStore

log = logging.getLogger(__name__)

TERMINAL = ("Succeeded", "Failed")


class JobSettings(msgspec.Struct, frozen=True):
    node_name: str
    partition: str | None = None
    sbatch_concurrency: int = 8
    stats_interval: int = DEFAULT_STATS_INTERVAL  # seconds between the jobs' usage samples
    gres_map: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_GRES_MAP))
    cluster_dns: tuple[str, ...] = ()  # the cluster DNS servers pods use (dnsPolicy ClusterFirst)
    cluster_domain: str = "cluster.local"
    node_resolv_conf: str = (
        ""  # the node's resolv.conf: Default and ClusterFirst pods start from it
    )


async def recover_jobs(slurm: SlurmClient, jobs: JobTable, paths: PodPaths) -> int:
    """Refill ``jobs`` from squeue (job names carry pod UIDs) and the pods' job id files."""
    found = 0
    if paths.root.is_dir():
        for entry in os.scandir(paths.root):
            try:
                job_id = paths.job_id_file(entry.name).read_text().strip()
            except OSError:
                continue
            if job_id:
                jobs.set(entry.name, Job(job_id=job_id, submitted_at=0.0))
                found += 1
    for row in await slurm.squeue():
        if row.name.startswith("mobius-"):
            uid = row.name.removeprefix("mobius-")
            current = jobs.get(uid)
            if current is None or current.job_id != row.job_id:
                jobs.set(uid, Job(job_id=row.job_id, submitted_at=0.0))
                found += 1
    return found


def _write_private(path: os.PathLike[str] | str, text: str | bytes) -> None:
    tmp = f"{os.fspath(path)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    os.replace(tmp, path)


async def submit_pod(
    pod: Pod,
    *,
    slurm: SlurmClient,
    kube: KubeClient,
    jobs: JobTable,
    paths: PodPaths,
    runtime: Runtime,
    settings: JobSettings,
    limiter: trio.CapacityLimiter | None = None,
    cache: SharedCache | None = None,
    retry: dict[str, float] | None = None,
) -> None:
    """Render the pod's job and sbatch it; an invalid pod gets a job entry with its error.

    ``limiter`` caps concurrent sbatch calls only: fetching references, writing files and
    posting events run outside it, so they overlap with other pods' submissions.

    ConfigMaps, Secrets, Services, claims and node facts the environment and volumes refer to
    (and the image pull secrets) are fetched first, and the volumes and registry logins written
    under the pod's folder (with new service-account tokens) before sbatch. A missing
    non-optional one leaves the pod Pending (container waiting reason and Warning event
    ``CreateContainerConfigError``, or ``FailedMount`` for a volume, with a pod condition, as
    the kubelet reports them): this call returns after
    ``CONFIG_RETRY`` seconds without a job entry, so ``serve_jobs`` tries again while the pod
    exists, and the pod starts once the object is created.
    """
    uid = pod.metadata.uid
    pod_dir = paths.pod_dir(uid)
    try:
        refs = await fetch_refs(kube, pod, node_name=settings.node_name, cache=cache)
        volumes = plan_volumes(pod, refs=refs, pod_dir=str(pod_dir))
        dns = pod_resolv_conf(
            pod,
            node_resolv_conf=settings.node_resolv_conf,
            cluster_dns=settings.cluster_dns,
            cluster_domain=settings.cluster_domain,
        )
        spec = render_job(
            pod,
            pod_dir=str(pod_dir),
            runtime=runtime,
            partition=settings.partition,
            refs=refs,
            stats_interval=settings.stats_interval,
            gres_map=settings.gres_map,
            volumes=volumes,
            resolv_conf=dns.resolv_conf is not None,
        )
        tokens = await request_tokens(kube, pod, volumes)
        auth = pull_auth(pod, refs)
        registry_files = auth_files(pod, auth)
    except MissingReference as exc:
        await _report_config_error(kube, pod, exc, host=settings.node_name)
        await trio.sleep(CONFIG_RETRY)
        return
    except (InvalidPodSpec, ParseError) as exc:
        POD_FAILURES.labels("InvalidPodSpec").inc()
        jobs.set(uid, Job(job_id="", error=str(exc), reason="InvalidPodSpec"))
        await emit_event(
            kube,
            pod,
            reason="InvalidPodSpec",
            type="Warning",
            message=str(exc),
            host=settings.node_name,
        )
        return
    warnings = (*pod_warnings(pod, refs=refs, runtime=runtime.name), *volumes.warnings)
    for warning in (*warnings, *auth.warnings):
        await emit_event(
            kube,
            pod,
            reason=warning.reason,
            type="Warning",
            message=warning.message,
            host=settings.node_name,
        )
    if dns.warning:  # said once at start-up (mobius.app), not per pod
        log.debug("%s", dns.warning)

    def prepare() -> None:
        (pod_dir / "logs").mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(pod_dir, 0o700)
        _write_private(pod_dir / "job.sh", spec.script)
        write_volumes(pod_dir, volumes, tokens)
        if dns.resolv_conf is not None:
            (pod_dir / "resolv.conf").write_text(dns.resolv_conf)
        for name, data in registry_files.items():  # imagePullSecrets, for the image steps
            (pod_dir / name).parent.mkdir(mode=0o700, exist_ok=True)
            _write_private(pod_dir / name, data)

    await trio.to_thread.run_sync(prepare)
    try:
        async with limiter or contextlib.nullcontext():
            job_id = await slurm.sbatch_file(str(pod_dir / "job.sh"), spec.sbatch_args)
    except SlurmCommandError as exc:
        message = f"sbatch refused the job: {exc.stderr}"
        if not _retryable(exc):
            POD_FAILURES.labels("SlurmSubmitFailed").inc()
            jobs.set(uid, Job(job_id="", error=message, reason="SlurmSubmitFailed"))
            await emit_event(
                kube,
                pod,
                reason="SlurmSubmitFailed",
                type="Warning",
                message=message,
                host=settings.node_name,
            )
            return
        # Limits (QOS, association, MaxJobCount, RPC rate) pass: say so once, then try again
        # after a back-off. Returning without a job entry makes serve_jobs call again while
        # the pod still exists and is not being deleted.
        delay = retry.get(uid, 0.0) if retry is not None else 0.0
        if delay == 0.0:
            await _report_refusal(kube, pod, message, host=settings.node_name)
        delay = min(max(2 * delay, SUBMIT_RETRY), SUBMIT_RETRY_MAX)
        if retry is not None:
            retry[uid] = delay
        log.warning("sbatch for %s failed (%s); retrying in %.0fs", pod.key, exc, delay)
        await trio.sleep(delay)
        return
    if retry is not None:
        retry.pop(uid, None)
    jobs.set(uid, Job(job_id=job_id, submitted_at=trio.current_time()))
    PODS_SUBMITTED.inc()
    await trio.to_thread.run_sync(_write_private, paths.job_id_file(uid), job_id + "\n")
    await emit_event(
        kube,
        pod,
        reason="Submitted",
        message=f"Submitted as Slurm job {job_id}",
        host=settings.node_name,
    )


CONFIG_RETRY = 5.0  # seconds between tries of a pod waiting for a ConfigMap or Secret
CONFIG_ERROR = "CreateContainerConfigError"


def _config_error_status(pod: Pod, exc: MissingReference) -> dict[str, Any]:
    """Pending, the container whose reference is missing waiting with CreateContainerConfigError
    (the others ContainerCreating, or PodInitializing behind a waiting init container)."""
    init_failed = exc.field.startswith("spec.initContainers[")

    def statuses(kind: str, containers: list[Container], later: str) -> list[dict[str, Any]]:
        out = []
        for i, c in enumerate(containers):
            if exc.field.startswith(f"spec.{kind}[{i}]"):
                waiting = {"reason": CONFIG_ERROR, "message": exc.why}
            else:
                waiting = {"reason": later}
            out.append(
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": waiting},
                }
            )
        return out

    app_reason = "PodInitializing" if init_failed else "ContainerCreating"
    mount = exc.field.startswith(("spec.volumes", "spec.serviceAccountName"))
    status: dict[str, Any] = {
        "phase": "Pending",
        "containerStatuses": statuses("containers", pod.spec.containers, app_reason),
        # Why the job is not submitted yet, on the pod itself (the event may be missed).
        "conditions": [
            {
                "type": SUBMITTED,
                "status": "False",
                "reason": "FailedMount" if mount else CONFIG_ERROR,
                "message": exc.why[:1000],
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(),
            }
        ],
    }
    if pod.spec.init_containers:
        status["initContainerStatuses"] = statuses(
            "initContainers", pod.spec.init_containers, "PodInitializing"
        )
    return status


async def _report_config_error(
    kube: KubeClient, pod: Pod, exc: MissingReference, *, host: str
) -> None:
    """Say once (per distinct message) why the pod waits: a Warning event and its status.

    The status is written here, not by the status writer: the poller only reports pods that
    have a job entry, and this pod has none until it is submitted.
    """
    status = _config_error_status(pod, exc)
    (condition,) = status["conditions"]
    if (
        status["containerStatuses"] == pod.status.container_statuses
        and status.get("initContainerStatuses", []) == pod.status.init_container_statuses
        and any(
            c.get("type") == SUBMITTED and c.get("message") == condition["message"]
            for c in pod.status.conditions
        )
    ):
        return  # already reported: the watch brought our own status back
    log.info("pod %s waits: %s", pod.key, exc)
    reason = condition["reason"]
    await emit_event(kube, pod, reason=reason, type="Warning", message=str(exc), host=host)
    ns, name = pod.metadata.namespace, pod.metadata.name
    try:
        # Strategic merge: the condition joins those the pod has (PodScheduled) by type.
        await kube.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}/status",
            body={"status": status},
            content_type="application/strategic-merge-patch+json",
        )
    except (ApiError, ApiUnreachable) as err:
        log.warning("could not report %s on pod %s: %s", CONFIG_ERROR, pod.key, err)


SUBMIT_RETRY, SUBMIT_RETRY_MAX = 2.0, 60.0  # back-off of sbatch retries, seconds
SUBMITTED = "mobius.io/SlurmSubmitted"  # the pod condition that says why a job is not in yet


async def _report_refusal(kube: KubeClient, pod: Pod, message: str, *, host: str) -> None:
    """A Warning event and a pod condition: Slurm refused the job for now, Mobius retries."""
    await emit_event(
        kube,
        pod,
        reason="SlurmSubmitRetrying",
        type="Warning",
        message=f"{message}; retrying",
        host=host,
    )
    condition = {
        "type": SUBMITTED,
        "status": "False",
        "reason": "SlurmRefused",
        "message": message[:1000],
        "lastProbeTime": None,
        "lastTransitionTime": rfc3339(),
    }
    ns, name = pod.metadata.namespace, pod.metadata.name
    try:
        await kube.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}/status",
            body={"status": {"conditions": [condition]}},
            content_type="application/strategic-merge-patch+json",
        )
    except (ApiError, ApiUnreachable) as err:
        log.warning("could not report the refusal on pod %s: %s", pod.key, err)


def _retryable(exc: SlurmCommandError) -> bool:
    text = exc.stderr.lower()
    permanent = (
        "invalid partition",
        "invalid account",
        "invalid qos",
        "requested node configuration",
        "memory specification",
        "more processors than",
        "invalid generic resource",
    )
    return not any(p in text for p in permanent)


# After its grace period a stopping job gets this long to clean up (podman's own stop and
# sandbox removal) before it is cancelled outright.
STOP_MARGIN = 10.0
# How long to wait for a cancelled job to leave the running states before its files go.
CANCEL_WAIT = 30.0


async def stop_job(
    slurm: SlurmClient,
    paths: PodPaths,
    uid: str,
    job_id: str,
    grace: int,
    *,
    runtime: Runtime | None = None,
) -> None:
    """Stop a pod's job gracefully and wait until it has ended.

    The grace period goes to ``ctl/grace``, then TERM to the batch script only: its trap stops
    the containers within that grace and removes the sandbox. Only a job still running after
    grace + STOP_MARGIN is cancelled outright (Slurm then SIGKILLs after its KillWait, which
    can leave runtime processes behind that escaped the job, so it is the last resort).
    A job still pending is simply cancelled. With ``runtime``, what is left of the pod's
    sandbox on this host after the job ended is removed (see :func:`reap_sandbox`).
    """
    try:
        state = await _job_state(slurm, job_id)
        if state in _LIVE:
            await trio.to_thread.run_sync(_write_grace, paths, uid, grace)
            await slurm.scancel(job_id, signal="TERM", batch_only=True)
            with trio.move_on_after(grace + STOP_MARGIN):
                while await _job_active(slurm, job_id):  # noqa: ASYNC110 (Slurm has no push)
                    await trio.sleep(0.5)
        if await _job_state(slurm, job_id) in (*_LIVE, *_WAITING):
            await slurm.scancel(job_id)
            with trio.move_on_after(CANCEL_WAIT):
                while await _job_active(slurm, job_id):  # noqa: ASYNC110
                    await trio.sleep(0.5)
    except SlurmCommandError as exc:
        log.info("stopping job %s of pod %s: %s", job_id, uid, exc)
    if runtime is not None:
        await reap_sandbox(runtime, paths, uid)


async def reap_sandbox(runtime: Runtime, paths: PodPaths, uid: str) -> None:
    """Remove what is left of a pod's sandbox after its job ended, when the job ran on this
    host (the private cluster, or a kubelet on a compute node).

    A job Slurm killed outright (its KillWait passed) loses the containers that escaped its
    process tracking (podman's conmon); on other hosts a site epilog does this.
    """
    argv = runtime.reap_command(sandbox=sandbox_name(uid))
    if not argv:
        return
    pod_dir = paths.pod_dir(uid)
    try:
        node = (await trio.Path(paths.ctl_dir(uid) / "node").read_text()).strip()
    except OSError:
        return
    if node != socket.gethostname():
        return
    env = {**os.environ, "CONTAINERS_CONF": str(pod_dir / "containers.conf")}
    with trio.move_on_after(60):
        await trio.run_process(
            argv,
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


async def delete_pod(
    pod: Pod,
    *,
    slurm: SlurmClient,
    kube: KubeClient,
    jobs: JobTable,
    paths: PodPaths,
    node_name: str = "",
    runtime: Runtime | None = None,
) -> None:
    """Graceful delete: stop the job within the pod's grace period, then remove the pod object
    (its files go when the watch sees it gone)."""
    uid = pod.metadata.uid
    job = jobs.get(uid)
    grace = pod.metadata.deletion_grace_period_seconds
    grace = 30 if grace is None else grace
    if job is not None and job.job_id:
        if await _job_state(slurm, job.job_id) in _LIVE:
            names = ", ".join(c.name for c in pod.spec.containers)
            await emit_event(
                kube,
                pod,
                reason="Killing",
                host=node_name,
                message=f"Stopping container {names} (grace {grace}s)",
            )
        await stop_job(slurm, paths, uid, job.job_id, grace, runtime=runtime)
    ns, name = pod.metadata.namespace, pod.metadata.name
    # NotFound: already gone. Conflict: the name now belongs to a new pod (another UID).
    with contextlib.suppress(NotFound, Conflict):
        await kube.request(
            "DELETE",
            f"/api/v1/namespaces/{ns}/pods/{name}",
            body={
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid},
            },
        )


def _write_grace(paths: PodPaths, uid: str, grace: int) -> None:
    paths.ctl_dir(uid).mkdir(parents=True, exist_ok=True)
    _write_private(paths.ctl_dir(uid) / "grace", f"{grace}\n")


async def _job_state(slurm: SlurmClient, job_id: str) -> str | None:
    return await slurm.job_state(job_id)


_LIVE = ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "SIGNALING", "STAGE_OUT")
_WAITING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD")


async def _job_active(slurm: SlurmClient, job_id: str) -> bool:
    return await _job_state(slurm, job_id) in _LIVE


async def forget_pod(
    uid: str,
    *,
    slurm: SlurmClient,
    jobs: JobTable,
    paths: PodPaths,
    runtime: Runtime | None = None,
) -> None:
    """The pod is gone from the API (deleted, force-deleted, or while the kubelet was down):
    stop its job at once (grace 0) and, once it has ended, remove its files."""
    job = jobs.get(uid)
    if job is not None and job.job_id:
        await stop_job(slurm, paths, uid, job.job_id, 0, runtime=runtime)
    jobs.forget(uid)
    await trio.to_thread.run_sync(lambda: shutil.rmtree(paths.pod_dir(uid), ignore_errors=True))


async def serve_jobs(
    kube: KubeClient,
    slurm: SlurmClient,
    *,
    store: PodStore,
    jobs: JobTable,
    paths: PodPaths,
    runtime: Runtime,
    settings: JobSettings,
    changes: trio.MemoryReceiveChannel[str],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    limiter = trio.CapacityLimiter(settings.sbatch_concurrency)
    cache = SharedCache()
    retry: dict[str, float] = {}  # UID -> current sbatch back-off, while Slurm refuses
    busy: dict[str, str] = {}  # UID -> the action in flight for it
    deleted: set[str] = set()  # deletes done, waiting for the watch to see the pod go

    def decide(uid: str) -> tuple[str, Pod] | None:
        pod = store.get(uid)
        if pod is None:
            deleted.discard(uid)
            retry.pop(uid, None)
            return ("forget", Pod()) if uid in jobs else None
        if pod.metadata.deletion_timestamp:
            return None if uid in deleted else ("delete", pod)
        if uid not in jobs and pod.status.phase not in TERMINAL:
            return "submit", pod
        return None

    async def act(uid: str, action: str, pod: Pod) -> None:
        """Do what the pod needs, then whatever arrived meanwhile (a delete during a submit)."""
        delay = 1.0
        while True:
            try:
                if action == "submit":
                    await submit_pod(
                        pod,
                        slurm=slurm,
                        kube=kube,
                        jobs=jobs,
                        paths=paths,
                        runtime=runtime,
                        settings=settings,
                        limiter=limiter,
                        cache=cache,
                        retry=retry,
                    )
                elif action == "delete":
                    await delete_pod(
                        pod,
                        slurm=slurm,
                        kube=kube,
                        jobs=jobs,
                        paths=paths,
                        node_name=settings.node_name,
                        runtime=runtime,
                    )
                    deleted.add(uid)
                else:
                    await forget_pod(uid, slurm=slurm, jobs=jobs, paths=paths, runtime=runtime)
                delay = 1.0
            except* (ApiError, ApiUnreachable, SlurmCommandError, OSError) as group:
                log.error(
                    "%s of pod %s failed (retrying in %.0fs): %s",
                    action,
                    uid,
                    delay,
                    group.exceptions,
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 60.0)
            todo = decide(uid)
            if todo is None:
                del busy[uid]
                return
            action, pod = todo
            busy[uid] = action

    def start(uid: str, nursery: trio.Nursery) -> None:
        if uid in busy:
            return
        todo = decide(uid)
        if todo is not None:
            busy[uid] = todo[0]
            nursery.start_soon(act, uid, *todo)

    async def sweep_orphans(nursery: trio.Nursery) -> None:
        """Once the pod watch has listed, cancel jobs whose pods are gone (e.g. deleted while
        the kubelet was down)."""
        await store.synced.wait()
        for uid, _ in jobs.items():
            if store.get(uid) is None:
                start(uid, nursery)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sweep_orphans, nursery)
        task_status.started()
        async for uid in changes:
            start(uid, nursery)
    raise AssertionError("pod change channel closed")


__all__ = ["JobSettings", "job_name", "recover_jobs", "serve_jobs"]
