"""Load Kubernetes credentials from a kubeconfig file or the in-cluster service account.

This is the only module that imports the ``kubernetes`` package, and it uses it only to read
credentials (kubeconfig parsing, exec/auth plugins, in-cluster files), as kopf does. Every API
call goes through :mod:`mobius.kube.client` with httpx.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import msgspec

from mobius.errors import ConfigError


class Credentials(msgspec.Struct, frozen=True):
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    verify: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def __repr__(self) -> str:
        auth = "cert" if self.cert_file else "token" if self.token else "none"
        return f"<Credentials {self.server} auth={auth}>"


def load_credentials(kubeconfig: str | os.PathLike[str] | None = None) -> Credentials:
    """Credentials from ``kubeconfig``, else ``$KUBECONFIG``/``~/.kube/config``, else in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        if (
            kubeconfig is not None
            or os.environ.get("KUBECONFIG")
            or Path("~/.kube/config").expanduser().exists()
        ):
            path = os.fspath(kubeconfig) if kubeconfig is not None else None
            config.load_kube_config(config_file=path, client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config or in-cluster"
        raise ConfigError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc
    token = None
    auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    if auth:
        token = auth.removeprefix("Bearer ").strip()
    return Credentials(
        server=cfg.host,
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        token=token,
        verify=bool(cfg.verify_ssl),
    )
