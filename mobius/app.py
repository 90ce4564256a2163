"""The kubelet supervisor: one nursery, every long-lived task started in order.

Reading :func:`run_kubelet` tells what the program does:

1. the kubelet API (HTTPS, port bound) for kubectl logs, exec, stats and Mobius's own metrics,
   and metrics.k8s.io registered as an APIService (kubectl top); the admission webhooks
   (Services made headless), registered with the API server once their port is bound;
2. the node (registered, Lease renewed);
3. the job task: sbatch for new pods, graceful cancel for deleted ones, and, once the pod
   watch has listed, cancellation of jobs whose pods are gone; beside it the deadline task
   (activeDeadlineSeconds) and the volume task (ConfigMap/Secret contents, tokens renewed);
4. the pod watch (initial LIST done) feeding pod UIDs to the job task;
5. the pass-through scheduler binding unscheduled pods to our node;
6. the status writer (coalesced pod status writes, events on phase changes), and beside it the
   container events (probe failures, containers killed, failed hooks, image pulls);
7. the status poller (first squeue snapshot diffed), feeding both.

The job task starts before the watch so that a first LIST of any size can be handed over
through the bounded channel without blocking start-up.
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from typing import Any, NoReturn

import trio

from mobius.admission.serving import WebhookSettings, serve_admission
from mobius.config import KubeletSettings
from mobius.kube.binding import serve_binder
from mobius.kube.client import KubeClient
from mobius.kube.credentials import load_credentials
from mobius.kube.events import serve_container_events
from mobius.kube.patching import serve_status_writer
from mobius.kube.pods import serve_pod_watch
from mobius.kube.volumes import serve_volume_updates
from mobius.kubelet.resources import register_metrics_api
from mobius.kubelet.server import ApiServerSettings, serve_kubelet_api
from mobius.metrics import REGISTRY as METRICS
from mobius.metrics import StateCollector
from mobius.metrics import render as render_metrics
from mobius.node.heartbeat import NodeSettings, serve_node
from mobius.pods.probes import ContainerEvent
from mobius.runtime import runtime_named
from mobius.slurm.commands import SlurmClient
from mobius.slurm.deadlines import serve_deadlines
from mobius.slurm.jobs import JobSettings, recover_jobs, serve_jobs
from mobius.slurm.polling import StatusPoller, serve_status_poller
from mobius.state import ClusterInfo, JobTable, PodPaths, PodStore

log = logging.getLogger(__name__)


async def run_kubelet(
    settings: KubeletSettings, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    runtime = runtime_named(
        settings.runtime,
        flags=settings.podman_flags if settings.runtime == "podman" else (),
        network=settings.podman_network,
    )
    slurm = SlurmClient(env=settings.slurm_env)
    store, jobs, paths = PodStore(), JobTable(), PodPaths(settings.state_dir)
    cluster = ClusterInfo()
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not settings.cluster_dns:
        log.warning(
            "no cluster DNS (--cluster-dns): pods with dnsPolicy ClusterFirst use the node's "
            "resolv.conf"
        )
    recovered = await recover_jobs(slurm, jobs, paths)
    if recovered:
        log.info("recovered %d jobs from squeue and pod folders", recovered)
    changes_send, changes_recv = trio.open_memory_channel[str](10_000)
    updates_send, updates_recv = trio.open_memory_channel[tuple[str, dict[str, Any]]](10_000)
    events_send, events_recv = trio.open_memory_channel[tuple[str, ContainerEvent]](1_000)

    async with (
        KubeClient(
            load_credentials(settings.kubeconfig), qps=settings.qps, burst=settings.burst
        ) as kube,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            partial(
                serve_kubelet_api,
                ApiServerSettings(
                    bind=settings.kubelet_bind,
                    port=settings.kubelet_port,
                    cert_file=settings.serving_cert,
                    key_file=settings.serving_key,
                    client_ca_file=settings.client_ca,
                    node_name=settings.node_name,
                    max_log_streams=settings.max_log_streams,
                    front_proxy_ca_file=settings.front_proxy_ca,
                ),
                store=store,
                paths=paths,
                kube=kube,
                runtime=runtime,
                slurm_env=settings.slurm_env,
                metrics=render_metrics,
            )
        )
        if settings.front_proxy_ca:
            await register_metrics_api(
                kube,
                address=settings.node_address,
                port=settings.kubelet_port,
                ca_bundle_file=settings.serving_ca or settings.client_ca,
            )
        if settings.webhook_port:
            await nursery.start(
                partial(
                    serve_admission,
                    kube,
                    WebhookSettings(
                        bind=settings.kubelet_bind,
                        port=settings.webhook_port,
                        address=settings.node_address,
                        cert_file=settings.serving_cert,
                        key_file=settings.serving_key,
                        ca_bundle_file=settings.serving_ca or settings.client_ca,
                    ),
                )
            )
        await nursery.start(
            partial(
                serve_node,
                kube,
                slurm,
                settings=NodeSettings(
                    name=settings.node_name,
                    address=settings.node_address,
                    kubelet_port=settings.kubelet_port,
                    runtime=settings.runtime,
                    max_pods=settings.max_pods,
                    taint=settings.taint,
                ),
                cluster=cluster,
            )
        )
        await nursery.start(
            partial(
                serve_jobs,
                kube,
                slurm,
                store=store,
                jobs=jobs,
                paths=paths,
                runtime=runtime,
                changes=changes_recv,
                settings=JobSettings(
                    node_name=settings.node_name,
                    partition=settings.partition,
                    sbatch_concurrency=settings.sbatch_concurrency,
                    stats_interval=settings.stats_interval,
                    gres_map=settings.gres_map,
                    cluster_dns=settings.cluster_dns,
                    cluster_domain=settings.cluster_domain,
                    node_resolv_conf=await node_resolv_conf(),
                ),
            )
        )
        await nursery.start(
            partial(
                serve_deadlines,
                kube,
                slurm,
                store=store,
                jobs=jobs,
                paths=paths,
                node_name=settings.node_name,
            )
        )
        await nursery.start(
            partial(
                serve_volume_updates,
                kube,
                store=store,
                jobs=jobs,
                paths=paths,
                node_name=settings.node_name,
            )
        )
        await nursery.start(
            partial(
                serve_pod_watch,
                kube,
                node_name=settings.node_name,
                store=store,
                changes=changes_send,
            )
        )
        await nursery.start(
            partial(
                serve_binder,
                kube,
                node_name=settings.node_name,
                scheduler_names=settings.scheduler_names,
                cluster=cluster,
            )
        )
        await nursery.start(
            partial(
                serve_status_writer,
                kube,
                store=store,
                updates=updates_recv,
                node_name=settings.node_name,
            )
        )
        await nursery.start(
            partial(
                serve_container_events,
                kube,
                store=store,
                events=events_recv,
                node_name=settings.node_name,
            )
        )
        poller = await nursery.start(
            partial(
                serve_status_poller,
                slurm,
                store=store,
                jobs=jobs,
                paths=paths,
                updates=updates_send,
                interval=settings.poll_interval,
                accounting=slurm.sacct if await slurm.accounting_enabled() else None,
                host_ip=settings.node_address,
                events=events_send,
            )
        )
        collector = StateCollector(
            store=store,
            job_states=partial(job_states, poller),
            queues={
                "pod-changes": lambda: changes_recv.statistics().current_buffer_used,
                "status-updates": lambda: updates_recv.statistics().current_buffer_used,
            },
        )
        METRICS.register(collector)
        try:
            log.info("kubelet for node %s is up (%d pods known)", settings.node_name, len(store))
            task_status.started()
            await trio.sleep_forever()
        finally:
            METRICS.unregister(collector)
    raise AssertionError("supervisor nursery exited")


async def node_resolv_conf() -> str:
    """This host's resolv.conf, which pods start from (HPC sites keep it alike on every node)."""
    try:
        return await trio.Path("/etc/resolv.conf").read_text()
    except OSError as exc:
        log.warning("cannot read /etc/resolv.conf (%s): pods get no node resolver settings", exc)
        return ""


def job_states(poller: StatusPoller) -> dict[str, int]:
    """Our jobs in the poller's last squeue snapshot, by Slurm state."""
    return dict(
        Counter(row.state for row in poller.rows.values() if row.name.startswith("mobius-"))
    )
