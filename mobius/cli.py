"""Command line: ``python -m mobius up | kubelet | controlplane | slurm``.

Each command runs in the foreground under trio; SIGINT and SIGTERM cancel the root nursery, so
every child process (etcd, the API server, Slurm daemons, sbatch) is stopped before exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from mobius.errors import MobiusError

log = logging.getLogger("mobius")


def default_home() -> Path:
    return Path(os.environ.get("MOBIUS_HOME", "~/.mobius")).expanduser()


def default_bin_dir() -> Path:
    """Where ``make setup`` puts etcd, kube-apiserver, kube-controller-manager and kubectl."""
    if env := os.environ.get("MOBIUS_KUBE_BIN"):
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return cache / "mobius" / "bin"


async def _until_signalled(body: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run ``body`` until it returns or SIGINT/SIGTERM arrives; then cancel it (children stop)."""
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("received %s; stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch_signals)
        await body(*args)
        nursery.cancel_scope.cancel()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mobius", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up", help="control plane + Slurm (private unless one is reachable) + kubelet"
    )
    up.add_argument(
        "--home", type=Path, default=None, help="state folder (default $MOBIUS_HOME or ~/.mobius)"
    )
    up.add_argument("--apiserver-port", type=int, default=6443)
    up.add_argument("--kubelet-port", type=int, default=10250)
    up.add_argument(
        "--slurm-cpus",
        type=int,
        default=None,
        help="CPUs the private Slurm node claims (default: this machine's); may exceed them",
    )
    up.add_argument(
        "--private-slurm",
        action="store_true",
        help="start a private Slurm even if sinfo reaches a cluster",
    )
    up.add_argument(
        "--slurm-gpus",
        type=int,
        default=0,
        help="GPUs (GRES gpu, counted only) the private Slurm node declares",
    )
    up.add_argument(
        "--stats-interval",
        type=int,
        default=15,
        help="seconds between the jobs' CPU and memory samples (kubectl top); 0: none",
    )

    k = sub.add_parser("kubelet", help="run the virtual kubelet against an existing API server")
    k.add_argument("--kubeconfig", default=None)
    k.add_argument("--node-name", default="mobius")
    k.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="folder for pod files, on storage every Slurm node can read",
    )
    k.add_argument("--partition", default=None)
    k.add_argument(
        "--address", default=None, help="address the API server uses to reach this kubelet"
    )
    k.add_argument("--port", type=int, default=10250)
    k.add_argument("--serving-cert", required=True)
    k.add_argument("--serving-key", required=True)
    k.add_argument("--client-ca", required=True, help="CA of the API server's kubelet client cert")
    k.add_argument("--slurm-conf", default=None, help="SLURM_CONF for every Slurm command")
    k.add_argument("--poll-interval", type=float, default=1.0)
    k.add_argument(
        "--webhook-port",
        type=int,
        default=0,
        help="serve the admission webhooks (headless Services) on this port; 0: off",
    )
    k.add_argument("--max-pods", type=int, default=10000, help="pods the node admits")
    k.add_argument(
        "--taint",
        action="store_true",
        help="taint the node virtual-kubelet.io/provider=mobius:NoSchedule",
    )
    k.add_argument("--runtime", choices=("podman", "apptainer", "singularity"), default="podman")
    k.add_argument(
        "--podman-network",
        default="bridge",
        help="the podman network pods join: one the site set up across its nodes "
        "(e.g. flannel through CNI) lets pods on different nodes reach each other",
    )
    k.add_argument(
        "--front-proxy-ca",
        default=None,
        help="the API server's --requestheader-client-ca-file: serve metrics.k8s.io (kubectl top)",
    )
    k.add_argument(
        "--stats-interval",
        type=int,
        default=15,
        help="seconds between the jobs' CPU and memory samples; 0: none",
    )
    k.add_argument(
        "--cluster-dns",
        action="append",
        default=[],
        metavar="IP",
        help="a cluster DNS server for dnsPolicy ClusterFirst pods (repeatable); "
        "without one they use the node's resolv.conf",
    )
    k.add_argument("--cluster-domain", default="cluster.local")
    k.add_argument(
        "--gres",
        action="append",
        default=[],
        metavar="RESOURCE=GRES",
        help="an extended resource that becomes a Slurm GRES (repeatable), "
        "e.g. example.com/fpga=fpga; nvidia.com/gpu and amd.com/gpu map to gpu",
    )

    c = sub.add_parser("controlplane", help="run etcd + kube-apiserver + kube-controller-manager")
    c.add_argument("--data-dir", type=Path, required=True)
    c.add_argument("--apiserver-port", type=int, default=6443)
    c.add_argument("--bin-dir", type=Path, default=None)

    s = sub.add_parser("slurm", help="run a private single-node Slurm cluster")
    s.add_argument("--root", type=Path, required=True)
    s.add_argument("--nodes", type=int, default=1)
    s.add_argument("--cpus", type=int, default=None, help="CPUs each node claims")
    return p


async def _main(args: argparse.Namespace) -> None:
    if args.command == "up":
        from mobius.up import UpSettings, run_up

        await run_up(
            UpSettings(
                home=args.home or default_home(),
                bin_dir=default_bin_dir(),
                apiserver_port=args.apiserver_port,
                kubelet_port=args.kubelet_port,
                force_private_slurm=args.private_slurm,
                slurm_cpus=args.slurm_cpus,
                stats_interval=args.stats_interval,
                slurm_gpus=args.slurm_gpus,
            )
        )
    elif args.command == "kubelet":
        from mobius.app import run_kubelet
        from mobius.config import KubeletSettings, cluster_dns, gres_map
        from mobius.node.heartbeat import default_address

        await run_kubelet(
            KubeletSettings(
                node_name=args.node_name,
                kubeconfig=args.kubeconfig,
                state_dir=args.state_dir,
                partition=args.partition,
                node_address=args.address or default_address(),
                kubelet_port=args.port,
                serving_cert=args.serving_cert,
                serving_key=args.serving_key,
                client_ca=args.client_ca,
                poll_interval=args.poll_interval,
                max_pods=args.max_pods,
                webhook_port=args.webhook_port,
                taint=args.taint,
                runtime=args.runtime,
                front_proxy_ca=args.front_proxy_ca or "",
                podman_network=args.podman_network,
                stats_interval=args.stats_interval,
                gres_map=gres_map(args.gres),
                cluster_dns=cluster_dns(args.cluster_dns),
                cluster_domain=args.cluster_domain,
                slurm_env={"SLURM_CONF": args.slurm_conf} if args.slurm_conf else {},
            )
        )
    elif args.command == "controlplane":
        from mobius.controlplane import ControlPlaneSettings, free_port, serve_control_plane

        async with trio.open_nursery() as nursery:
            cp = await nursery.start(
                serve_control_plane,
                ControlPlaneSettings(
                    data_dir=args.data_dir,
                    bin_dir=args.bin_dir or default_bin_dir(),
                    etcd_client_port=free_port(),
                    etcd_peer_port=free_port(),
                    apiserver_port=args.apiserver_port,
                    controller_manager_port=free_port(),
                ),
            )
            print(f"ready: KUBECONFIG={cp.kubeconfig}", flush=True)
    elif args.command == "slurm":
        from mobius.slurm.cluster import PrivateSlurmSettings, serve_private_slurm

        async with trio.open_nursery() as nursery:
            env = await nursery.start(
                serve_private_slurm,
                PrivateSlurmSettings(root=args.root, nodes=args.nodes, cpus_per_node=args.cpus),
            )
            print(f"ready: SLURM_CONF={env.conf_path}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        trio.run(_until_signalled, _main, args)
    except* MobiusError as group:
        for exc in group.exceptions:
            print(f"mobius: error: {exc}", file=sys.stderr)
        sys.exit(1)
