"""The control plane launcher: real etcd, kube-apiserver and kube-controller-manager (e2e), and
how it reports children that are missing, die or never get ready (with stand-in scripts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from mobius.controlplane import launcher
from mobius.controlplane.launcher import (
    ControlPlane,
    ControlPlaneSettings,
    corefile,
    free_port,
    serve_control_plane,
)
from mobius.controlplane.pki import client_ssl_context
from mobius.errors import StartupError

BIN_DIR = Path(os.environ.get("MOBIUS_KUBE_BIN", "~/.cache/mobius/bin")).expanduser()

needs_binaries = pytest.mark.skipif(
    not (BIN_DIR / "kube-apiserver").exists(),
    reason=f"no kube-apiserver in {BIN_DIR}: run `make setup` or set MOBIUS_KUBE_BIN",
)


def _settings(data_dir: Path, bin_dir: Path = BIN_DIR) -> ControlPlaneSettings:
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port())
    etcd_client, etcd_peer, apiserver, controller_manager = sorted(ports)
    return ControlPlaneSettings(
        data_dir=data_dir,
        bin_dir=bin_dir,
        etcd_client_port=etcd_client,
        etcd_peer_port=etcd_peer,
        apiserver_port=apiserver,
        controller_manager_port=controller_manager,
    )


def _processes_using(path: Path) -> dict[int, str]:
    """Live processes whose command line mentions ``path`` (pid -> command)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(str(path).encode() in arg for arg in argv):
            found[int(entry.name)] = Path(argv[0].decode()).name
    return found


def _admin(plane: ControlPlane) -> httpx.AsyncClient:
    pki = plane.pki
    context = client_ssl_context(
        ca_path=pki.ca_cert, cert_path=pki.admin_cert, key_path=pki.admin_key
    )
    return httpx.AsyncClient(base_url=plane.url, verify=context, timeout=10)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_missing_binaries_say_how_to_get_them(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    with pytest.raises(
        StartupError, match=r"etcd, kube-apiserver, kube-controller-manager .*make setup"
    ):
        await serve_control_plane(_settings(tmp_path / "data", tmp_path / "bin"))


@pytest.fixture
def stand_ins(tmp_path: Path) -> Path:
    """A bin dir of shell scripts; tests overwrite the ones they need."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
        _script(bin_dir / name, "exit 0")
    return bin_dir


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


async def test_a_child_that_exits_is_reported_with_its_log(tmp_path: Path, stand_ins: Path) -> None:
    _script(stand_ins / "etcd", 'echo "mkdir /data: no space left on device" >&2; exit 2')
    died = pytest.RaisesExc(
        StartupError,
        match=r"(?s)^etcd exited with code 2 after .*etcd\.log:\n    mkdir /data: no space left",
    )
    with pytest.RaisesGroup(died):
        await serve_control_plane(_settings(tmp_path / "data", stand_ins))


async def test_a_child_that_never_gets_ready_is_stopped(
    tmp_path: Path, stand_ins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "ETCD_TIMEOUT", 1.0)
    pid_file = tmp_path / "etcd.pid"
    _script(stand_ins / "etcd", f'echo $$ > "{pid_file}"; echo waiting for peers; exec sleep 600')
    late = pytest.RaisesExc(
        StartupError, match=r"(?s)^etcd was not ready within 1 s \(last check: GET https://.*peers"
    )
    with pytest.RaisesGroup(late):
        await serve_control_plane(_settings(tmp_path / "data", stand_ins))
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_logs_of_the_previous_run_are_kept(tmp_path: Path, stand_ins: Path) -> None:
    _script(stand_ins / "etcd", 'echo "run $$"; exit 1')
    settings = _settings(tmp_path / "data", stand_ins)
    for _ in range(2):
        with pytest.RaisesGroup(StartupError):
            await serve_control_plane(settings)
    logs = tmp_path / "data" / "logs"
    assert (logs / "etcd.log").read_text() != (logs / "etcd.log.1").read_text()


# --------------------------------------------------------------------------------------------
# The real thing


def _built_version() -> str:
    out = subprocess.run(
        [BIN_DIR / "kube-apiserver", "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[-1]  # "Kubernetes v1.36.3"


@pytest.mark.e2e
@needs_binaries
async def test_the_control_plane_serves_kubernetes_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "control-plane"
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            plane: ControlPlane = await nursery.start(serve_control_plane, _settings(data_dir))
            assert sorted(_processes_using(data_dir).values()) == [
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
            ]
            async with _admin(plane) as http:
                version = (await http.get("/version")).json()
                assert version["gitVersion"] == _built_version()
                assert not version["gitVersion"].startswith("v0.0.0")

                account = await http.get("/api/v1/namespaces/default/serviceaccounts/default")
                assert account.status_code == 200

                namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "e2e"}}
                created = await http.post("/api/v1/namespaces", json=namespace)
                assert created.status_code == 201, created.text
            assert plane.kubeconfig == data_dir / "admin.kubeconfig"
            assert plane.kubeconfig.stat().st_mode & 0o777 == 0o600
            nursery.cancel_scope.cancel()
        assert _processes_using(data_dir) == {}

        # A restart on the same data dir keeps the cluster: same CA, same objects.
        ca = plane.pki.ca_cert.read_bytes()
        async with trio.open_nursery() as nursery:
            again: ControlPlane = await nursery.start(serve_control_plane, _settings(data_dir))
            assert again.pki.ca_cert.read_bytes() == ca
            async with _admin(again) as http:
                assert (await http.get("/api/v1/namespaces/e2e")).status_code == 200
            nursery.cancel_scope.cancel()
        assert _processes_using(data_dir) == {}


@pytest.mark.e2e
@needs_binaries
async def test_a_component_that_dies_later_is_an_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "control-plane"
    died = pytest.RaisesExc(StartupError, match="^kube-controller-manager was killed by SIGKILL")
    with trio.fail_after(120), pytest.RaisesGroup(died, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control_plane, _settings(data_dir))
            (pid,) = (p for p, n in _processes_using(data_dir).items() if n.endswith("manager"))
            os.kill(pid, signal.SIGKILL)
            await trio.sleep_forever()
    assert _processes_using(data_dir) == {}


@pytest.mark.e2e
@needs_binaries
async def test_a_busy_port_is_reported_with_the_apiserver_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "control-plane"
    settings = _settings(data_dir)
    busy = pytest.RaisesExc(
        StartupError, match=r"(?s)^kube-apiserver exited with code 1 .*address already in use"
    )
    with trio.fail_after(120), socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.apiserver_port))
        squatter.listen()
        with pytest.RaisesGroup(busy):
            await serve_control_plane(settings)
    assert _processes_using(data_dir) == {}


async def test_a_dns_address_needs_coredns(tmp_path: Path, stand_ins: Path) -> None:
    settings = msgspec.structs.replace(
        _settings(tmp_path / "data", stand_ins), dns_address="10.1.2.3"
    )
    with pytest.raises(StartupError, match=r"coredns not found .*make setup"):
        await serve_control_plane(settings)


def test_corefile_serves_the_cluster_domain_and_forwards_the_rest() -> None:
    text = corefile(
        address="10.1.2.3",
        port=53,
        domain="cluster.local",
        kubeconfig=Path("/k/admin.kubeconfig"),
        ready_port=8181,
    )
    assert text.startswith(".:53 {\n    bind 10.1.2.3\n")
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in text
    assert "kubeconfig /k/admin.kubeconfig" in text
    assert "ready 127.0.0.1:8181" in text
    assert "forward . /etc/resolv.conf" in text


@pytest.mark.e2e
@needs_binaries
async def test_coredns_answers_for_services(tmp_path: Path) -> None:
    """CoreDNS as the control plane's last child, on a free high port of loopback: a Service
    created afterwards resolves to its address, and nothing is left after the stop."""
    import dns.resolver

    if not (BIN_DIR / "coredns").exists():
        pytest.fail(f"no coredns in {BIN_DIR}: run `make setup`")
    data_dir = tmp_path / "cp"
    port = free_port()
    settings = msgspec.structs.replace(_settings(data_dir), dns_address="127.0.0.1", dns_port=port)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], port, 2.0

    def lookup() -> list[str]:
        try:
            return [r.to_text() for r in resolver.resolve("db.default.svc.cluster.local", "A")]
        except dns.exception.DNSException:
            return []

    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            plane: ControlPlane = await nursery.start(serve_control_plane, settings)
            assert plane.dns == "127.0.0.1"
            assert "coredns" in _processes_using(data_dir).values()
            async with _admin(plane) as http:
                svc = {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "db"},
                    "spec": {"ports": [{"port": 5432}]},
                }
                made = await http.post("/api/v1/namespaces/default/services", json=svc)
                assert made.status_code == 201, made.text
                cluster_ip = made.json()["spec"]["clusterIP"]
            answer: list[str] = []
            with trio.move_on_after(60):
                while not answer:
                    answer = await trio.to_thread.run_sync(lookup)
                    await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
        assert _processes_using(data_dir) == {}
    assert answer == [cluster_ip]
