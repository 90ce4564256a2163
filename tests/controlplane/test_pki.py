"""The control plane's PKI: what Kubernetes reads from each certificate, and reuse on restart."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from mobius.controlplane.pki import (
    FRONT_PROXY_CLIENT_NAME,
    Pki,
    client_ssl_context,
    issue_cert,
    issue_kubelet_serving_cert,
    load_cert_and_key,
    new_ca,
    write_kubeconfig,
    write_pki,
)

EXTRA_SANS = ("10.1.2.3", "login1.example")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return write_pki(tmp_path / "pki", extra_sans=EXTRA_SANS)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        set(san.get_values_for_type(x509.DNSName)),
        {str(ip) for ip in san.get_values_for_type(x509.IPAddress)},
    )


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _names(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(cn), [str(o) for o in orgs]


def _verify_server(pki: Pki, cert_path: Path, name: x509.DNSName | x509.IPAddress) -> None:
    """Full RFC 5280 path validation (the same strictness as Go's crypto/x509)."""
    verifier = PolicyBuilder().store(Store([_cert(pki.ca_cert)])).build_server_verifier(name)
    verifier.verify(_cert(cert_path), [])


def _cert_files(pki: Pki) -> list[Path]:
    return sorted(pki.dir.glob("*.crt"))


def test_the_ca_is_a_self_signed_ca_for_ten_years(pki: Pki) -> None:
    ca = _cert(pki.ca_cert)
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert datetime.timedelta(days=3649) < lifetime < datetime.timedelta(days=3651)


def test_every_certificate_is_signed_by_the_ca(pki: Pki) -> None:
    ca = _cert(pki.ca_cert)
    front_proxy = {pki.front_proxy_ca_cert, pki.front_proxy_client_cert}
    leaves = [p for p in _cert_files(pki) if p != pki.ca_cert and p not in front_proxy]
    assert len(leaves) == 6
    for path in leaves:
        _cert(path).verify_directly_issued_by(ca)
        pair = load_cert_and_key(path, path.with_suffix(".key"))
        assert pair.cert.public_key() == pair.key.public_key(), path


def test_the_front_proxy_has_a_ca_of_its_own(pki: Pki) -> None:
    """A cluster certificate must never pass for the aggregation layer's proxy (which names the
    user in headers), so its client certificate comes from a separate CA."""
    proxy_ca, client = _cert(pki.front_proxy_ca_cert), _cert(pki.front_proxy_client_cert)
    client.verify_directly_issued_by(proxy_ca)
    with pytest.raises((ValueError, InvalidSignature)):
        client.verify_directly_issued_by(_cert(pki.ca_cert))
    cn = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == FRONT_PROXY_CLIENT_NAME
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    pair = load_cert_and_key(pki.front_proxy_client_cert, pki.front_proxy_client_key)
    assert pair.cert.public_key() == pair.key.public_key()


@pytest.mark.parametrize(
    "name",
    [
        *(x509.DNSName(d) for d in ["localhost", "kubernetes", "kubernetes.default"]),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        x509.DNSName("login1.example"),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ["127.0.0.1", "10.96.0.1"]),
        x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
    ],
    ids=str,
)
def test_the_apiserver_certificate_serves_every_name_of_the_api_server(
    pki: Pki, name: x509.DNSName | x509.IPAddress
) -> None:
    _verify_server(pki, pki.apiserver_cert, name)


def test_the_first_service_ip_follows_the_service_cidr(tmp_path: Path) -> None:
    pki = write_pki(tmp_path, service_cidr="172.20.0.0/16")
    _, ips = _sans(_cert(pki.apiserver_cert))
    assert ips == {"127.0.0.1", "172.20.0.1"}


@pytest.mark.parametrize(
    ("attr", "cn", "orgs"),
    [
        ("admin_cert", "mobius-admin", ["system:masters"]),
        ("apiserver_kubelet_client_cert", "kube-apiserver-kubelet-client", ["system:masters"]),
        ("controller_manager_cert", "system:kube-controller-manager", []),
        ("apiserver_etcd_client_cert", "kube-apiserver-etcd-client", []),
    ],
)
def test_client_certificates_carry_the_kubernetes_identity(
    pki: Pki, attr: str, cn: str, orgs: list[str]
) -> None:
    cert = _cert(getattr(pki, attr))
    assert _names(cert) == (cn, orgs)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in _usages(cert)


def test_servers_of_loopback_ports_verify_for_127_0_0_1(pki: Pki) -> None:
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    for path in (pki.etcd_server_cert, pki.controller_manager_cert):
        _verify_server(pki, path, loopback)


def test_key_files_are_private(pki: Pki) -> None:
    keys = sorted(pki.dir.glob("*.key"))
    assert len(keys) == 10  # two CAs, seven leaves, the service-account key
    for path in keys:
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert pki.dir.stat().st_mode & 0o777 == 0o700


def test_the_service_account_key_pair_is_rsa(pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(pki.sa_key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pki.sa_pub.read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert key.public_key() == public


def _snapshot(pki: Pki) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(pki.dir.iterdir())}


def test_writing_again_reuses_every_file(pki: Pki) -> None:
    before = _snapshot(pki)
    again = write_pki(pki.dir, extra_sans=EXTRA_SANS)
    assert again == pki
    assert _snapshot(pki) == before


def test_new_sans_reissue_only_the_apiserver_certificate(pki: Pki) -> None:
    before = _snapshot(pki)
    write_pki(pki.dir, extra_sans=("10.9.9.9",))
    after = _snapshot(pki)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"apiserver.crt", "apiserver.key"}
    _verify_server(pki, pki.apiserver_cert, x509.IPAddress(ipaddress.ip_address("10.9.9.9")))


def test_a_broken_ca_reissues_everything(pki: Pki) -> None:
    before = _snapshot(pki)
    pki.ca_key.write_bytes(b"not a key")
    write_pki(pki.dir, extra_sans=EXTRA_SANS)
    after = _snapshot(pki)
    changed = {name for name in before if before[name] != after[name]}
    # Tokens already issued stay valid: the service-account key pair does not depend on the CA.
    # Nor does the front proxy's pair: it has a CA of its own.
    assert changed == {p.name for p in pki.dir.iterdir() if p.suffix in (".crt", ".key")} - {
        "sa.key",
        *(p.name for p in (pki.front_proxy_ca_cert, pki.front_proxy_ca_key)),
        *(p.name for p in (pki.front_proxy_client_cert, pki.front_proxy_client_key)),
    }
    test_every_certificate_is_signed_by_the_ca(pki)


def test_a_certificate_about_to_expire_is_reissued(pki: Pki) -> None:
    ca = load_cert_and_key(pki.ca_cert, pki.ca_key)
    short = issue_cert(
        ca, common_name="mobius-admin", organizations=["system:masters"], server=False,
        client=True, days=3,
    )  # fmt: skip
    pki.admin_cert.write_bytes(short.cert_pem)
    pki.admin_key.write_bytes(short.key_pem)
    write_pki(pki.dir, extra_sans=EXTRA_SANS)
    renewed = _cert(pki.admin_cert)
    assert renewed.not_valid_after_utc - renewed.not_valid_before_utc > datetime.timedelta(300)


def test_a_key_with_loose_permissions_is_tightened_on_reuse(pki: Pki) -> None:
    pki.admin_key.chmod(0o644)
    write_pki(pki.dir, extra_sans=EXTRA_SANS)
    assert pki.admin_key.stat().st_mode & 0o777 == 0o600


def test_a_certificate_needs_a_purpose() -> None:
    with pytest.raises(ValueError, match="server, a client or both"):
        issue_cert(new_ca(), common_name="x", server=False, client=False)


def test_the_kubelet_serving_certificate_names_the_node_and_its_addresses(pki: Pki) -> None:
    cert_path, key_path = issue_kubelet_serving_cert(
        pki.dir, "mobius-node", ["10.0.0.5"], ["login1.example"]
    )
    assert key_path.stat().st_mode & 0o777 == 0o600
    cert = _cert(cert_path)
    assert _names(cert) == ("system:node:mobius-node", ["system:nodes"])
    assert _usages(cert) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert _sans(cert) == ({"mobius-node", "login1.example"}, {"10.0.0.5"})
    for name in (x509.IPAddress(ipaddress.ip_address("10.0.0.5")), x509.DNSName("mobius-node")):
        _verify_server(pki, cert_path, name)


def test_the_kubelet_serving_certificate_is_reused_until_the_addresses_change(pki: Pki) -> None:
    cert_path, _ = issue_kubelet_serving_cert(pki.dir, "n1", ["10.0.0.5"], [])
    first = cert_path.read_bytes()
    issue_kubelet_serving_cert(pki.dir, "n1", [ipaddress.ip_address("10.0.0.5")], [])
    assert cert_path.read_bytes() == first
    issue_kubelet_serving_cert(pki.dir, "n1", ["10.0.0.6"], [])
    assert cert_path.read_bytes() != first


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", ".hidden"])
def test_a_node_name_cannot_escape_the_directory(pki: Pki, bad: str) -> None:
    with pytest.raises(ValueError, match="not a node name"):
        issue_kubelet_serving_cert(pki.dir, bad, [], [])


async def test_python_tls_accepts_the_kubelet_certificate_and_the_admin_client(pki: Pki) -> None:
    """What the API server does towards a kubelet, done with Python's own TLS stack."""
    cert_path, key_path = issue_kubelet_serving_cert(pki.dir, "n1", ["10.0.0.5"], [])
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    server_context.load_cert_chain(str(cert_path), str(key_path))
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = client_ssl_context(
        ca_path=pki.ca_cert, cert_path=pki.admin_cert, key_path=pki.admin_key
    )
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_raw, client_context, server_hostname="10.0.0.5")
    server = trio.SSLStream(server_raw, server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    peer = server.getpeercert()
    assert peer is not None
    assert (("commonName", "mobius-admin"),) in peer["subject"]


async def test_a_kubelet_reached_under_an_address_not_in_its_certificate_is_refused(
    pki: Pki,
) -> None:
    cert_path, key_path = issue_kubelet_serving_cert(pki.dir, "n1", ["10.0.0.5"], [])
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(cert_path), str(key_path))
    client_context = client_ssl_context(ca_path=pki.ca_cert)
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_raw, client_context, server_hostname="10.0.0.99")
    server = trio.SSLStream(server_raw, server_context, server_side=True)
    refused = pytest.RaisesExc(
        trio.BrokenResourceError,
        check=lambda exc: "IP address mismatch" in str(exc.__cause__),
    )
    with pytest.RaisesGroup(refused):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)


def test_the_kubeconfig_is_self_contained_and_private(pki: Pki, tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "admin.kubeconfig",
        server="https://127.0.0.1:6443",
        ca_path=pki.ca_cert,
        cert_path=pki.admin_cert,
        key_path=pki.admin_key,
    )
    assert path.stat().st_mode & 0o777 == 0o600
    config = json.loads(path.read_text())
    assert config["current-context"] == "mobius-admin@mobius"
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    user = config["users"][0]["user"]
    assert set(user) == {"client-certificate-data", "client-key-data"}


def test_the_kubernetes_package_loads_the_kubeconfig(pki: Pki, tmp_path: Path) -> None:
    from kubernetes import client, config

    path = write_kubeconfig(
        tmp_path / "admin.kubeconfig",
        server="https://127.0.0.1:6443",
        ca_path=pki.ca_cert,
        cert_path=pki.admin_cert,
        key_path=pki.admin_key,
    )
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(path), client_configuration=configuration
    )
    assert configuration.host == "https://127.0.0.1:6443"
    for written, original in [
        (configuration.ssl_ca_cert, pki.ca_cert),
        (configuration.cert_file, pki.admin_cert),
        (configuration.key_file, pki.admin_key),
    ]:
        assert written is not None
        assert Path(written).read_bytes() == original.read_bytes()
