"""Settings of the kubelet, gathered from the command line and environment in one Struct."""

from __future__ import annotations

from pathlib import Path

import msgspec

# Global podman flags; cgroup manager, events and rlimits come from the per-pod containers.conf.
DEFAULT_PODMAN_FLAGS = ("--log-level=error",)


class KubeletSettings(msgspec.Struct, frozen=True, kw_only=True):
    node_name: str = "mobius"
    kubeconfig: str | None = None
    state_dir: Path
    runtime: str = "podman"
    podman_flags: tuple[str, ...] = DEFAULT_PODMAN_FLAGS
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
