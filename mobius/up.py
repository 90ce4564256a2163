"""``mobius up``: the embedded default, everything a user needs in one foreground command.

It starts the control plane, a private Slurm unless ``sinfo`` already reaches a cluster, and the
kubelet, then prints the ``export KUBECONFIG=...`` line. The admin kubeconfig goes to
``$MOBIUS_HOME/kubeconfig`` and the matching kubectl to ``$MOBIUS_HOME/bin``. Ctrl-C or SIGTERM
cancels the nursery, which stops every child it started.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path
from typing import NoReturn

import msgspec
import trio

from mobius.app import run_kubelet
from mobius.config import KubeletSettings
from mobius.controlplane import (
    ControlPlaneSettings,
    free_port,
    issue_kubelet_serving_cert,
    serve_control_plane,
)
from mobius.kubelet.resources import SERVICE_DNS_NAME as METRICS_SERVICE_DNS_NAME
from mobius.slurm.cluster import PrivateSlurmSettings, serve_private_slurm, slurm_reachable

log = logging.getLogger(__name__)


class UpSettings(msgspec.Struct, frozen=True, kw_only=True):
    home: Path
    bin_dir: Path
    apiserver_port: int = 6443
    kubelet_port: int = 10250
    node_name: str = "mobius"
    force_private_slurm: bool = False
    slurm_cpus: int | None = None
    stats_interval: int = 15
    slurm_gpus: int = 0


def cluster_dns_address() -> tuple[str, str]:
    """(address, "") where the cluster DNS can serve pods: this host's outgoing address, which
    pods reach from their own network namespaces, on port 53 (all a resolv.conf can name);
    ("", why not) when there is none or this user may not bind it there."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 53))  # sends nothing: picks the outgoing address
            address = str(probe.getsockname()[0])
    except OSError as exc:
        return "", f"this host has no outgoing IPv4 address ({exc.strerror})"
    if address.startswith("127."):
        return "", "this host has only a loopback address"
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        try:
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, 53))
        except OSError as exc:
            return "", f"cannot listen on {address}:53 ({exc.strerror})"
    return address, ""


async def run_up(
    settings: UpSettings, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    home = settings.home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    dns, why = cluster_dns_address()
    if not dns:
        log.warning("no cluster DNS: %s; pods use the node's resolver", why)
    async with trio.open_nursery() as nursery:
        cp = await nursery.start(
            serve_control_plane,
            ControlPlaneSettings(
                data_dir=home / "controlplane",
                bin_dir=settings.bin_dir,
                etcd_client_port=free_port(),
                etcd_peer_port=free_port(),
                apiserver_port=settings.apiserver_port,
                controller_manager_port=free_port(),
                dns_address=dns,
            ),
        )
        kubeconfig = home / "kubeconfig"
        await trio.to_thread.run_sync(shutil.copyfile, cp.kubeconfig, kubeconfig)
        os.chmod(kubeconfig, 0o600)
        bin_dir = home / "bin"
        bin_dir.mkdir(exist_ok=True)
        kubectl = bin_dir / "kubectl"
        if kubectl.is_symlink() or kubectl.exists():
            kubectl.unlink()
        kubectl.symlink_to(settings.bin_dir / "kubectl")

        slurm_env: dict[str, str] = {}
        if settings.force_private_slurm or not await slurm_reachable():
            log.info("no Slurm cluster reachable: starting a private one")
            cluster = await nursery.start(
                serve_private_slurm,
                PrivateSlurmSettings(
                    root=home / "slurm",
                    cpus_per_node=settings.slurm_cpus,
                    gpus_per_node=settings.slurm_gpus,
                ),
            )
            slurm_env = cluster.env
        address = "127.0.0.1"
        cert, key = await trio.to_thread.run_sync(
            lambda: issue_kubelet_serving_cert(
                cp.pki.dir,
                settings.node_name,
                ips=[address],
                # The aggregation layer checks this name when it proxies metrics.k8s.io.
                dns_names=["localhost", METRICS_SERVICE_DNS_NAME],
            )
        )
        await nursery.start(
            run_kubelet,
            KubeletSettings(
                node_name=settings.node_name,
                kubeconfig=str(cp.kubeconfig),
                state_dir=home / "state",
                slurm_env=slurm_env,
                node_address=address,
                kubelet_bind=address,
                kubelet_port=settings.kubelet_port,
                serving_cert=str(cert),
                serving_key=str(key),
                client_ca=str(cp.pki.ca_cert),
                serving_ca=str(cp.pki.ca_cert),
                webhook_port=free_port(),
                front_proxy_ca=str(cp.pki.front_proxy_ca_cert),
                stats_interval=settings.stats_interval,
                cluster_dns=(cp.dns,) if cp.dns else (),
            ),
        )
        print(
            f"Mobius is up. Use it with:\n  export KUBECONFIG={kubeconfig} PATH={bin_dir}:$PATH",
            flush=True,
        )
        task_status.started(kubeconfig)
    raise AssertionError("up: nursery exited")
