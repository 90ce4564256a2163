"""Settings of the kubelet, gathered from the command line and environment in one Struct."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import msgspec

from mobius.errors import ConfigError
from mobius.pods.script import DEFAULT_GRES_MAP

_RESOURCE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_GRES = re.compile(r"^[A-Za-z0-9_]+(:[A-Za-z0-9_.-]+)?$")


def gres_map(pairs: list[str]) -> dict[str, str]:
    """``RESOURCE=GRES`` pairs on top of the default map; ConfigError naming a bad pair.

    The GRES may carry a type (``gpu:a100``); the pod's count is appended to it.
    """
    out = dict(DEFAULT_GRES_MAP)
    for pair in pairs:
        resource, sep, gres = pair.partition("=")
        if not sep or not _RESOURCE.match(resource) or not _GRES.match(gres):
            raise ConfigError(
                f"--gres {pair!r}: write RESOURCE=GRES, e.g. example.com/fpga=fpga "
                "or nvidia.com/gpu=gpu:a100"
            )
        out[resource] = gres
    return out


def cluster_dns(values: list[str]) -> tuple[str, ...]:
    """``--cluster-dns`` values: IP addresses (a resolv.conf names servers by address only)."""
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(v)))
        except ValueError:
            raise ConfigError(f"--cluster-dns {v!r}: give the DNS server's IP address") from None
    return tuple(out)


# Global podman flags; cgroup manager, events and rlimits come from the per-pod containers.conf.
DEFAULT_PODMAN_FLAGS = ("--log-level=error",)


class KubeletSettings(msgspec.Struct, frozen=True, kw_only=True):
    node_name: str = "mobius"
    kubeconfig: str | None = None
    state_dir: Path
    runtime: str = "podman"
    podman_flags: tuple[str, ...] = DEFAULT_PODMAN_FLAGS
    podman_network: str = "bridge"  # a network the site set up across its nodes (CNI, netavark)
    partition: str | None = None
    slurm_env: dict[str, str] = {}
    node_address: str = "127.0.0.1"
    kubelet_bind: str = "0.0.0.0"
    kubelet_port: int = 10250
    serving_cert: str = ""
    serving_key: str = ""
    client_ca: str = ""
    max_log_streams: int = 512  # concurrent `kubectl logs -f` streams
    poll_interval: float = 1.0
    sbatch_concurrency: int = 8
    # A pod costs about six requests (binding, events, references, status writes): the limit
    # must let a burst of hundreds of pods through per second, yet protect the API server.
    qps: float = 1000.0
    burst: int = 2000
    scheduler_names: tuple[str, ...] = ("default-scheduler", "mobius")
    max_pods: int = 10000
    webhook_port: int = 0  # 0: serve no admission webhooks
    serving_ca: str = ""  # the CA that signed serving_cert (the webhooks' caBundle)
    taint: bool = False
    stats_interval: int = 15  # seconds between the jobs' usage samples (kubectl top); 0: off
    # The API server's front-proxy CA (--requestheader-client-ca-file): set, the kubelet also
    # serves the metrics.k8s.io API, registered as an APIService, so kubectl top works.
    front_proxy_ca: str = ""
    # Extended resources that become Slurm GRES (``--gres=<gres>:<n>``).
    gres_map: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_GRES_MAP))
    # The kubelet's --cluster-dns / --cluster-domain: what ClusterFirst pods resolve with.
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
