"""Runs etcd, kube-apiserver, kube-controller-manager (and CoreDNS) as supervised children.

Mobius gives each user a private Kubernetes control plane: the genuine upstream servers, started
on loopback ports with certificates from `mobius.controlplane.pki`. `serve_control_plane` starts
them one after the other, each only once the one before answers its health check, and reports
ready when the API server serves ``/readyz`` and the controller manager has created the
``default`` ServiceAccount (pods are not admitted before it exists). With a DNS address, CoreDNS
follows: the cluster DNS (Services and pods of ``cluster.local``, everything else forwarded to
the host's resolvers), reported ready once its kubernetes plugin has synced.

Every child runs under ``trio.run_process`` inside the task's nursery, so nothing outlives it. Each
child is shielded from outer cancellation and stopped explicitly, newest first (controller
manager, API server, etcd: SIGTERM, then SIGKILL after `STOP_GRACE` seconds), so the API server
never loses etcd under its feet. A child that exits on its own, before or after the control plane
is ready, is a `StartupError` carrying the tail of its log.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import IO, NoReturn

import httpx
import msgspec
import trio

from mobius.controlplane.pki import (
    FRONT_PROXY_CLIENT_NAME,
    Pki,
    client_ssl_context,
    write_kubeconfig,
    write_pki,
)
from mobius.errors import StartupError

__all__ = [
    "APISERVER_TIMEOUT",
    "CONTROLLER_MANAGER_TIMEOUT",
    "COREDNS_TIMEOUT",
    "ETCD_TIMEOUT",
    "STOP_GRACE",
    "ControlPlane",
    "ControlPlaneSettings",
    "free_port",
    "serve_control_plane",
]

log = logging.getLogger(__name__)

ETCD_TIMEOUT = 30.0
APISERVER_TIMEOUT = 90.0
CONTROLLER_MANAGER_TIMEOUT = 60.0
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL

_POLL_INTERVAL = 0.2
_PROBE_TIMEOUT = 5.0
_LOG_TAIL_LINES = 20

_ETCD = "etcd"
_APISERVER = "kube-apiserver"
_CONTROLLER_MANAGER = "kube-controller-manager"
_COREDNS = "coredns"
COREDNS_TIMEOUT = 60.0
_BINARIES = (_ETCD, _APISERVER, _CONTROLLER_MANAGER)

# Controllers that only act on cloud infrastructure or on real node networking; without a cloud
# provider and with virtual nodes they would only log that they are skipped.
_DISABLED_CONTROLLERS = (
    "cloud-node-lifecycle-controller",
    "node-route-controller",
    "service-lb-controller",
    "node-ipam-controller",
)


class ControlPlaneSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the control plane keeps its state, where the binaries are, which ports it uses."""

    data_dir: Path
    bin_dir: Path
    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    controller_manager_port: int
    service_cidr: str = "10.96.0.0/12"
    extra_sans: tuple[str, ...] = ()
    feature_gates: str = ""  # passed to kube-apiserver and kube-controller-manager, e.g. "A=true"
    # Where CoreDNS serves the cluster's names ("": no cluster DNS). Pods' resolv.conf can only
    # name port 53, so that is where it listens on this address.
    dns_address: str = ""
    dns_port: int = 53
    cluster_domain: str = "cluster.local"


class ControlPlane(msgspec.Struct, frozen=True, kw_only=True):
    """A running control plane, as reported by `serve_control_plane` once it is ready."""

    url: str
    kubeconfig: Path  # admin (system:masters), certificates embedded
    pki: Pki
    data_dir: Path
    dns: str = ""  # the cluster DNS server's address, "" when none runs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (tests and default settings)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def serve_control_plane(
    settings: ControlPlaneSettings,
    *,
    task_status: trio.TaskStatus[ControlPlane] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run the control plane until cancelled; ``task_status.started(ControlPlane)`` when ready.

    Raises `StartupError` if a binary is missing, a component exits, or one is not ready in time
    (`ETCD_TIMEOUT`, `APISERVER_TIMEOUT`, `CONTROLLER_MANAGER_TIMEOUT`). Once children run, the
    error arrives inside an ExceptionGroup; catch it with ``except* StartupError``.
    """
    layout = await trio.to_thread.run_sync(partial(_prepare, settings))
    pki = layout.pki
    url = f"https://127.0.0.1:{settings.apiserver_port}"
    etcd_url = f"https://127.0.0.1:{settings.etcd_client_port}"
    children: list[_Child] = []
    async with trio.open_nursery() as nursery:
        try:
            etcd = _etcd(settings, layout)
            children.append(etcd)
            await nursery.start(etcd.run)
            etcd_client = (
                pki.ca_cert,
                pki.apiserver_etcd_client_cert,
                pki.apiserver_etcd_client_key,
            )
            async with _client(*etcd_client) as http:
                await etcd.wait_ready(partial(_etcd_health, http, etcd_url), ETCD_TIMEOUT)

            apiserver = _apiserver(settings, layout, etcd_url)
            children.append(apiserver)
            await nursery.start(apiserver.run)
            async with _client(pki.ca_cert, pki.admin_cert, pki.admin_key) as http:
                await apiserver.wait_ready(partial(_apiserver_ready, http, url), APISERVER_TIMEOUT)

                controller_manager = _controller_manager(settings, layout)
                children.append(controller_manager)
                await nursery.start(controller_manager.run)
                kcm_url = f"https://127.0.0.1:{settings.controller_manager_port}"
                await controller_manager.wait_ready(
                    partial(_controller_manager_ready, http, kcm_url, url),
                    CONTROLLER_MANAGER_TIMEOUT,
                )

            kubeconfig = await trio.to_thread.run_sync(
                partial(
                    write_kubeconfig,
                    settings.data_dir / "admin.kubeconfig",
                    server=url,
                    ca_path=pki.ca_cert,
                    cert_path=pki.admin_cert,
                    key_path=pki.admin_key,
                )
            )
            if settings.dns_address:
                ready_port = free_port()
                coredns = await trio.to_thread.run_sync(
                    partial(_coredns, settings, layout, kubeconfig, ready_port)
                )
                children.append(coredns)
                await nursery.start(coredns.run)
                async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT) as http:
                    await coredns.wait_ready(
                        partial(_coredns_ready, http, f"http://127.0.0.1:{ready_port}/ready"),
                        COREDNS_TIMEOUT,
                    )
            task_status.started(
                ControlPlane(
                    url=url,
                    kubeconfig=kubeconfig,
                    pki=pki,
                    data_dir=settings.data_dir,
                    dns=settings.dns_address,
                )
            )
            await trio.sleep_forever()
        finally:
            # Newest first; shielded, because this runs exactly when we are being cancelled.
            with trio.CancelScope(shield=True):
                for child in reversed(children):
                    await child.stop()


# --------------------------------------------------------------------------------------------
# Children


class _Child:
    """One server process: started in the nursery, stopped on request, an error if it exits."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, hint: str) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.hint = hint
        self.started_at: float | None = None
        # Outer cancellation must not reach the process: `stop` decides when it ends.
        self._scope = trio.CancelScope(shield=True)
        self._exited = trio.Event()

    def __repr__(self) -> str:
        state = "exited" if self._exited.is_set() else "running" if self.started_at else "new"
        return f"<_Child {self.name} {state} log={self.log_path}>"

    async def run(
        self, *, task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            log_file = await trio.to_thread.run_sync(_open_log, self.log_path)
            with log_file, self._scope:
                self.started_at = trio.current_time()
                try:
                    result = await trio.run_process(
                        self.argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        check=False,
                        # Keep a terminal's Ctrl-C away from the children: they are stopped in
                        # order by `stop`, not all at once by the terminal.
                        start_new_session=True,
                        deliver_cancel=_terminate,
                        task_status=task_status,
                    )
                except OSError as exc:
                    raise StartupError(
                        f"{self.name} could not be started from {self.argv[0]}: {exc}"
                    ) from exc
            if self._scope.cancel_called:
                return
            reason = f"{_exit_reason(result.returncode)} after {self._uptime():.1f} s"
            raise StartupError(await self._describe(reason))
        finally:
            self._exited.set()

    async def wait_ready(
        self, probe: Callable[[], Awaitable[str | None]], give_up_after: float
    ) -> None:
        """Poll ``probe`` (None means ready, else what is missing) for ``give_up_after`` s."""
        waiting = "no answer yet"
        with trio.move_on_after(give_up_after):
            while (answer := await probe()) is not None:
                waiting = answer
                await trio.sleep(_POLL_INTERVAL)
            log.info("%s ready after %.1f s", self.name, self._uptime())
            return
        raise StartupError(
            await self._describe(
                f"was not ready within {give_up_after:.0f} s (last check: {waiting})"
            )
        )

    async def stop(self) -> None:
        self._scope.cancel()
        await self._exited.wait()

    def _uptime(self) -> float:
        return 0.0 if self.started_at is None else trio.current_time() - self.started_at

    async def _describe(self, what: str) -> str:
        tail = await trio.to_thread.run_sync(_tail, self.log_path, _LOG_TAIL_LINES)
        return f"{self.name} {what}; last lines of {self.log_path}:\n{tail}\n{self.hint}"


async def _terminate(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `STOP_GRACE` seconds."""
    process.terminate()
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
        return
    log.warning("%s ignored SIGTERM for %.0f s; killing it", process.args, STOP_GRACE)
    process.kill()


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


# --------------------------------------------------------------------------------------------
# Health checks: each answers None when ready, else a short description of what it saw.


def _client(ca: Path, cert: Path, key: Path) -> httpx.AsyncClient:
    context = client_ssl_context(ca_path=ca, cert_path=cert, key_path=key)
    return httpx.AsyncClient(verify=context, timeout=_PROBE_TIMEOUT)


async def _get(http: httpx.AsyncClient, url: str) -> tuple[int, str] | str:
    """``(status, body)``, or why there was no answer."""
    # Shielded, and bounded by the client's timeout: httpcore leaks the socket of a TLS handshake
    # that is cancelled (say, when the child dies while we probe it).
    with trio.CancelScope(shield=True):
        try:
            response = await http.get(url)
        except (httpx.HTTPError, ssl.SSLError) as exc:
            return f"GET {url}: {type(exc).__name__}: {exc}"
    return response.status_code, response.text


async def _etcd_health(http: httpx.AsyncClient, etcd_url: str) -> str | None:
    answer = await _get(http, f"{etcd_url}/health")
    if isinstance(answer, str):
        return answer
    status, body = answer
    if status == 200 and '"health":"true"' in body.replace(" ", ""):
        return None
    return f"/health answered {status}: {body.strip()[:200]}"


async def _apiserver_ready(http: httpx.AsyncClient, url: str) -> str | None:
    answer = await _get(http, f"{url}/readyz")
    if isinstance(answer, str):
        return answer
    status, body = answer
    if status == 200:
        return None
    failing = [line for line in body.splitlines() if line.startswith("[-]")]
    return f"/readyz answered {status}: {'; '.join(failing) or body.strip()[:200]}"


async def _controller_manager_ready(http: httpx.AsyncClient, kcm_url: str, url: str) -> str | None:
    answer = await _get(http, f"{kcm_url}/healthz")
    if isinstance(answer, str):
        return answer
    status, body = answer
    if status != 200:
        return f"/healthz answered {status}: {body.strip()[:200]}"
    answer = await _get(http, f"{url}/api/v1/namespaces/default/serviceaccounts/default")
    if isinstance(answer, str):
        return answer
    status, _ = answer
    if status != 200:
        return f"the default ServiceAccount is not there yet ({status})"
    return None


# --------------------------------------------------------------------------------------------
# Files, and the command line of each child


class _Layout(msgspec.Struct, frozen=True, kw_only=True):
    binaries: dict[str, Path]
    pki: Pki
    etcd_data: Path
    logs: Path
    controller_manager_kubeconfig: Path
    flex_volume_dir: Path


def _prepare(settings: ControlPlaneSettings) -> _Layout:
    """Find the binaries, create the directories, certificates and the controller kubeconfig."""
    names = (*_BINARIES, _COREDNS) if settings.dns_address else _BINARIES
    binaries = {name: settings.bin_dir / name for name in names}
    missing = [n for n, p in binaries.items() if not (p.is_file() and os.access(p, os.X_OK))]
    if missing:
        raise StartupError(
            f"{', '.join(missing)} not found (or not executable) in {settings.bin_dir}; "
            "run `make setup` to build the Kubernetes binaries"
        )
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    etcd_data = data_dir / "etcd"
    etcd_data.mkdir(exist_ok=True, mode=0o700)  # etcd insists on 0700
    pki = write_pki(
        data_dir / "pki", service_cidr=settings.service_cidr, extra_sans=settings.extra_sans
    )
    kubeconfig = write_kubeconfig(
        data_dir / "controller-manager.kubeconfig",
        server=f"https://127.0.0.1:{settings.apiserver_port}",
        ca_path=pki.ca_cert,
        cert_path=pki.controller_manager_cert,
        key_path=pki.controller_manager_key,
        user="system:kube-controller-manager",
    )
    return _Layout(
        binaries=binaries,
        pki=pki,
        etcd_data=etcd_data,
        logs=logs,
        controller_manager_kubeconfig=kubeconfig,
        flex_volume_dir=data_dir / "flexvolume",
    )


def corefile(*, address: str, port: int, domain: str, kubeconfig: Path, ready_port: int) -> str:
    """CoreDNS's configuration: the cluster's names from the API server (Services are headless,
    so a Service name answers with its ready pods' addresses), the rest forwarded."""
    return f"""\
.:{port} {{
    bind {address}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    forward . /etc/resolv.conf
    cache 5
}}
"""


def _coredns(
    settings: ControlPlaneSettings, layout: _Layout, kubeconfig: Path, ready_port: int
) -> _Child:
    conf = settings.data_dir / "Corefile"
    conf.write_text(
        corefile(
            address=settings.dns_address,
            port=settings.dns_port,
            domain=settings.cluster_domain,
            kubeconfig=kubeconfig,
            ready_port=ready_port,
        )
    )
    hint = (
        f"Check that {settings.dns_address}:{settings.dns_port} is free (and that this user may "
        "bind it) and that the API server answers."
    )
    argv = [str(layout.binaries[_COREDNS]), "-conf", str(conf)]
    return _Child(_COREDNS, argv, layout.logs / f"{_COREDNS}.log", hint=hint)


async def _coredns_ready(http: httpx.AsyncClient, url: str) -> str | None:
    try:
        resp = await http.get(url)
    except httpx.HTTPError as exc:
        return f"{url}: {exc!r}"
    return None if resp.status_code == 200 else f"{url}: {resp.status_code} {resp.text[:200]}"


def _etcd(settings: ControlPlaneSettings, layout: _Layout) -> _Child:
    pki = layout.pki
    client = f"https://127.0.0.1:{settings.etcd_client_port}"
    peer = f"https://127.0.0.1:{settings.etcd_peer_port}"
    argv = [
        str(layout.binaries[_ETCD]),
        "--name=mobius",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=mobius={peer}",
        "--initial-cluster-state=new",
        # Loopback is shared by every user of a login node: TLS and client certificates only.
        f"--cert-file={pki.etcd_server_cert}",
        f"--key-file={pki.etcd_server_key}",
        f"--trusted-ca-file={pki.ca_cert}",
        "--client-cert-auth=true",
        f"--peer-cert-file={pki.etcd_server_cert}",
        f"--peer-key-file={pki.etcd_server_key}",
        f"--peer-trusted-ca-file={pki.ca_cert}",
        "--peer-client-cert-auth=true",
        # One throwaway member per user: durability of each write is not worth an fsync.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]
    hint = (
        f"Check that ports {settings.etcd_client_port} and {settings.etcd_peer_port} are free "
        f"and that no other etcd uses {layout.etcd_data}."
    )
    return _Child(_ETCD, argv, layout.logs / f"{_ETCD}.log", hint=hint)


def _apiserver(settings: ControlPlaneSettings, layout: _Layout, etcd_url: str) -> _Child:
    pki = layout.pki
    argv = [
        str(layout.binaries[_APISERVER]),
        f"--etcd-servers={etcd_url}",
        f"--etcd-cafile={pki.ca_cert}",
        f"--etcd-certfile={pki.apiserver_etcd_client_cert}",
        f"--etcd-keyfile={pki.apiserver_etcd_client_key}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={settings.apiserver_port}",
        f"--cert-dir={pki.dir}",  # never used (certificates are given), but not /var/run
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={settings.service_cidr}",
        "--authorization-mode=Node,RBAC",
        # On top of the default plugins. The virtual kubelet talks as admin, so NodeRestriction
        # does not limit it; it does limit any kubelet that uses a system:node: identity.
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        # The API server would publish its advertise address as the endpoint of the `kubernetes`
        # Service, but a loopback address is invalid there (and useless to pods elsewhere).
        "--endpoint-reconciler-type=none",
        f"--kubelet-client-certificate={pki.apiserver_kubelet_client_cert}",
        f"--kubelet-client-key={pki.apiserver_kubelet_client_key}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        # The aggregation layer (the kubelet serves metrics.k8s.io for `kubectl top`): requests
        # proxied to an aggregated API carry the front-proxy client certificate and the
        # caller's identity in these headers.
        f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT_NAME}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-uid-headers=X-Remote-Uid",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client_cert}",
        f"--proxy-client-key-file={pki.front_proxy_client_key}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--profiling=false",
        # Thousands of pods and their status updates; these bound API Priority and Fairness too.
        "--max-requests-inflight=1600",
        "--max-mutating-requests-inflight=800",
        "--watch-cache=true",
    ]
    if settings.feature_gates:
        argv.append(f"--feature-gates={settings.feature_gates}")
    hint = (
        f"Check that port {settings.apiserver_port} is free and that etcd at {etcd_url} is "
        f"healthy (its log is {layout.logs / f'{_ETCD}.log'})."
    )
    return _Child(_APISERVER, argv, layout.logs / f"{_APISERVER}.log", hint=hint)


def _controller_manager(settings: ControlPlaneSettings, layout: _Layout) -> _Child:
    pki = layout.pki
    kubeconfig = layout.controller_manager_kubeconfig
    argv = [
        str(layout.binaries[_CONTROLLER_MANAGER]),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={settings.controller_manager_port}",
        f"--tls-cert-file={pki.controller_manager_cert}",
        f"--tls-private-key-file={pki.controller_manager_key}",
        f"--cert-dir={pki.dir}",  # never used (certificates are given), but not /var/run
        # Authenticate callers of the secure port by our CA alone, instead of looking up the
        # front-proxy CA (which this control plane does not have) in kube-system every second.
        f"--client-ca-file={pki.ca_cert}",
        "--authentication-skip-lookup=true",
        # Otherwise it creates /usr/libexec/kubernetes/... (or warns when it may not).
        f"--flex-volume-plugin-dir={layout.flex_volume_dir}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--root-ca-file={pki.ca_cert}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        "--controllers=" + ",".join(["*", *(f"-{name}" for name in _DISABLED_CONTROLLERS)]),
        "--profiling=false",
        # The defaults (20/30) make Jobs and ReplicaSets of thousands of pods crawl.
        "--kube-api-qps=100",
        "--kube-api-burst=200",
    ]
    if settings.feature_gates:
        argv.append(f"--feature-gates={settings.feature_gates}")
    hint = (
        f"Check that port {settings.controller_manager_port} is free and that {kubeconfig} "
        f"reaches https://127.0.0.1:{settings.apiserver_port}; the default ServiceAccount "
        "comes from its serviceaccount-controller."
    )
    return _Child(_CONTROLLER_MANAGER, argv, layout.logs / f"{_CONTROLLER_MANAGER}.log", hint=hint)


def _open_log(path: Path) -> IO[bytes]:
    """A fresh log file; the previous run's log is kept as ``<name>.1``."""
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))
    return path.open("wb")


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read()
    except OSError as exc:
        return f"    (cannot read the log: {exc})"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text) or "    (the log is empty)"
