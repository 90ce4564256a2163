"""The certificates and keys of one private control plane, and kubeconfigs that use them.

Every component of a Mobius control plane authenticates with X.509 client certificates signed by
one throwaway cluster CA: the admin (``O=system:masters``), the API server towards etcd and towards
kubelets, the controller manager, and the virtual kubelet's HTTPS server. etcd serves TLS and
demands client certificates too, because ``127.0.0.1`` on a shared login node is reachable by every
user of that node. Service-account tokens are signed with a separate RSA key pair.

`write_pki` is idempotent: a file that exists, parses, is signed by the current CA, names the
expected subject and SANs and is not about to expire is reused; anything else is (re)issued. So a
restarted control plane keeps its CA, and kubeconfigs handed out earlier keep working.

Plain functions over ``cryptography`` and the file system; no trio, no network.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_DAYS",
    "FRONT_PROXY_CLIENT_NAME",
    "LEAF_DAYS",
    "CertAndKey",
    "Pki",
    "PrivateKey",
    "client_ssl_context",
    "issue_cert",
    "issue_kubelet_serving_cert",
    "load_cert_and_key",
    "new_ca",
    "new_service_account_key",
    "write_kubeconfig",
    "write_pki",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
IpLike = str | ipaddress.IPv4Address | ipaddress.IPv6Address

CA_DAYS = 3650
LEAF_DAYS = 365
# A certificate with less than this much validity left is reissued rather than reused.
_RENEW_BEFORE = datetime.timedelta(days=30)
# Clocks of login and compute nodes drift; certificates are valid from a little in the past.
_BACKDATE = datetime.timedelta(minutes=5)

FRONT_PROXY_CA_NAME = "mobius-front-proxy-ca"
FRONT_PROXY_CLIENT_NAME = "front-proxy-client"
"""The CN of the API server's proxy client certificate (``--requestheader-allowed-names``)."""

_KEY_MODE = 0o600
_CERT_MODE = 0o644

# The names under which pods (and the API server itself) reach the API server.
_APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


class CertAndKey(msgspec.Struct, frozen=True):
    """A certificate with its private key (the CA is one too)."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _private_pem(self.key)

    def __repr__(self) -> str:
        return f"CertAndKey(subject={self.cert.subject.rfc4514_string()!r})"


class Pki(msgspec.Struct, frozen=True, kw_only=True):
    """Paths of every file `write_pki` maintains in one directory."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    apiserver_cert: Path
    apiserver_key: Path
    apiserver_kubelet_client_cert: Path
    apiserver_kubelet_client_key: Path
    apiserver_etcd_client_cert: Path
    apiserver_etcd_client_key: Path
    etcd_server_cert: Path
    etcd_server_key: Path
    admin_cert: Path
    admin_key: Path
    controller_manager_cert: Path
    controller_manager_key: Path
    sa_key: Path
    sa_pub: Path
    # The aggregation layer: the API server proxies to aggregated APIs (metrics.k8s.io) with
    # this client certificate, issued by a CA of its own so that no cluster certificate can
    # pass for the proxy and claim another user's identity in its headers.
    front_proxy_ca_cert: Path
    front_proxy_ca_key: Path
    front_proxy_client_cert: Path
    front_proxy_client_key: Path

    def __repr__(self) -> str:
        return f"Pki(dir={str(self.dir)!r})"

    @classmethod
    def in_dir(cls, pki_dir: Path) -> Pki:
        """The file layout under ``pki_dir`` (nothing is read or written)."""

        def pair(stem: str) -> tuple[Path, Path]:
            return pki_dir / f"{stem}.crt", pki_dir / f"{stem}.key"

        ca_cert, ca_key = pair("ca")
        apiserver_cert, apiserver_key = pair("apiserver")
        kubelet_client_cert, kubelet_client_key = pair("apiserver-kubelet-client")
        etcd_client_cert, etcd_client_key = pair("apiserver-etcd-client")
        etcd_cert, etcd_key = pair("etcd-server")
        admin_cert, admin_key = pair("admin")
        kcm_cert, kcm_key = pair("controller-manager")
        fp_ca_cert, fp_ca_key = pair("front-proxy-ca")
        fp_cert, fp_key = pair("front-proxy-client")
        return cls(
            dir=pki_dir,
            ca_cert=ca_cert,
            ca_key=ca_key,
            apiserver_cert=apiserver_cert,
            apiserver_key=apiserver_key,
            apiserver_kubelet_client_cert=kubelet_client_cert,
            apiserver_kubelet_client_key=kubelet_client_key,
            apiserver_etcd_client_cert=etcd_client_cert,
            apiserver_etcd_client_key=etcd_client_key,
            etcd_server_cert=etcd_cert,
            etcd_server_key=etcd_key,
            admin_cert=admin_cert,
            admin_key=admin_key,
            controller_manager_cert=kcm_cert,
            controller_manager_key=kcm_key,
            sa_key=pki_dir / "sa.key",
            sa_pub=pki_dir / "sa.pub",
            front_proxy_ca_cert=fp_ca_cert,
            front_proxy_ca_key=fp_ca_key,
            front_proxy_client_cert=fp_cert,
            front_proxy_client_key=fp_key,
        )


# --------------------------------------------------------------------------------------------
# Issuing


def new_ca(*, common_name: str = "mobius-ca", days: int = CA_DAYS) -> CertAndKey:
    """A self-signed cluster CA with an EC P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertAndKey(cert=cert, key=key)


def issue_cert(
    ca: CertAndKey,
    *,
    common_name: str,
    organizations: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[IpLike] = (),
    server: bool,
    client: bool,
    days: int = LEAF_DAYS,
) -> CertAndKey:
    """A leaf certificate with a fresh EC P-256 key, signed by ``ca``.

    Kubernetes maps the CN to the user name and each O to a group of a client certificate.
    """
    if not (server or client):
        raise ValueError("a certificate must be for a server, a client or both")
    key = ec.generate_private_key(ec.SECP256R1())
    spec = _LeafSpec.make(
        common_name=common_name,
        organizations=organizations,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        server=server,
        client=client,
    )
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject())
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(spec.usages()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(ca.cert), critical=False)
    )
    sans = spec.sans()
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return CertAndKey(cert=builder.sign(ca.key, hashes.SHA256()), key=key)


def new_service_account_key() -> rsa.RSAPrivateKey:
    """The RSA key pair the API server signs service-account tokens with."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --------------------------------------------------------------------------------------------
# Files


def write_pki(
    pki_dir: Path,
    *,
    service_cidr: str = "10.96.0.0/12",
    extra_sans: Iterable[str] = (),
) -> Pki:
    """Create (or reuse) the CA, all component certificates and the service-account keys.

    ``extra_sans`` are further names or IP addresses of the API server (the address a pod on a
    compute node uses, for instance). Changing them reissues only the API server certificate.
    """
    pki = Pki.in_dir(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    service_ip = _first_service_ip(service_cidr)

    ca = _reuse_ca(pki.ca_cert, pki.ca_key)
    if ca is None:
        ca = new_ca()
        _write_pair(ca, pki.ca_cert, pki.ca_key)

    extra_dns, extra_ips = _split_sans(extra_sans)
    leaves = [
        (
            pki.apiserver_cert,
            pki.apiserver_key,
            _LeafSpec.make(
                common_name="kube-apiserver",
                dns_names=[*_APISERVER_DNS_NAMES, *extra_dns],
                ip_addresses=["127.0.0.1", service_ip, *extra_ips],
                server=True,
                client=False,
            ),
        ),
        (
            pki.apiserver_kubelet_client_cert,
            pki.apiserver_kubelet_client_key,
            _LeafSpec.make(
                common_name="kube-apiserver-kubelet-client",
                organizations=["system:masters"],
                server=False,
                client=True,
            ),
        ),
        (
            pki.apiserver_etcd_client_cert,
            pki.apiserver_etcd_client_key,
            _LeafSpec.make(common_name="kube-apiserver-etcd-client", server=False, client=True),
        ),
        (
            # etcd uses one certificate for its client and peer listeners, and as a peer it is a
            # client as well.
            pki.etcd_server_cert,
            pki.etcd_server_key,
            _LeafSpec.make(
                common_name="etcd",
                dns_names=["localhost"],
                ip_addresses=["127.0.0.1"],
                server=True,
                client=True,
            ),
        ),
        (
            pki.admin_cert,
            pki.admin_key,
            _LeafSpec.make(
                common_name="mobius-admin",
                organizations=["system:masters"],
                server=False,
                client=True,
            ),
        ),
        (
            # The controller manager's identity towards the API server, and the serving
            # certificate of its own secure port (health checks).
            pki.controller_manager_cert,
            pki.controller_manager_key,
            _LeafSpec.make(
                common_name="system:kube-controller-manager",
                dns_names=["localhost"],
                ip_addresses=["127.0.0.1"],
                server=True,
                client=True,
            ),
        ),
    ]
    for cert_path, key_path, spec in leaves:
        _ensure_leaf(ca, cert_path, key_path, spec)

    front_proxy_ca = _reuse_ca(pki.front_proxy_ca_cert, pki.front_proxy_ca_key)
    if front_proxy_ca is None:
        front_proxy_ca = new_ca(common_name=FRONT_PROXY_CA_NAME)
        _write_pair(front_proxy_ca, pki.front_proxy_ca_cert, pki.front_proxy_ca_key)
    _ensure_leaf(
        front_proxy_ca,
        pki.front_proxy_client_cert,
        pki.front_proxy_client_key,
        _LeafSpec.make(common_name=FRONT_PROXY_CLIENT_NAME, server=False, client=True),
    )

    if not _valid_sa_pair(pki.sa_key, pki.sa_pub):
        sa = new_service_account_key()
        _write_file(pki.sa_key, _private_pem(sa), _KEY_MODE)
        public = sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_file(pki.sa_pub, public, _CERT_MODE)
    return pki


def issue_kubelet_serving_cert(
    pki_dir: Path,
    node_name: str,
    ips: Iterable[IpLike] = (),
    dns_names: Iterable[str] = (),
) -> tuple[Path, Path]:
    """The serving certificate of a virtual kubelet's HTTPS server, signed by the cluster CA.

    The API server verifies it (``--kubelet-certificate-authority``) when it proxies logs and exec
    streams, connecting to the node's InternalIP or Hostname address, so both must be in ``ips`` /
    ``dns_names``; the node name is always added. Reused while it stays valid.
    """
    if not node_name or "/" in node_name or node_name.startswith("."):
        raise ValueError(f"not a node name: {node_name!r}")
    pki = Pki.in_dir(pki_dir)
    ca = load_cert_and_key(pki.ca_cert, pki.ca_key)
    cert_path = pki_dir / f"kubelet-{node_name}.crt"
    key_path = pki_dir / f"kubelet-{node_name}.key"
    spec = _LeafSpec.make(
        common_name=f"system:node:{node_name}",
        organizations=["system:nodes"],
        dns_names=[node_name, *dns_names],
        ip_addresses=ips,
        server=True,
        client=False,
    )
    _ensure_leaf(ca, cert_path, key_path, spec)
    return cert_path, key_path


def load_cert_and_key(cert_path: Path, key_path: Path) -> CertAndKey:
    """Read a PEM certificate and its PEM private key."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{key_path}: unsupported key type {type(key).__name__}")
    return CertAndKey(cert=cert, key=key)


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_path: Path,
    cert_path: Path,
    key_path: Path,
    user: str = "mobius-admin",
    cluster: str = "mobius",
) -> Path:
    """A self-contained kubeconfig (certificates embedded) with one context; mode 0600.

    Written as JSON, which every kubeconfig reader accepts since JSON is YAML.
    """

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode("ascii")

    context = f"{user}@{cluster}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": b64(ca_path)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert_path),
                    "client-key-data": b64(key_path),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_file(path, (json.dumps(config, indent=2) + "\n").encode(), _KEY_MODE)
    return path


def client_ssl_context(
    *, ca_path: Path, cert_path: Path | None = None, key_path: Path | None = None
) -> ssl.SSLContext:
    """A TLS client context that trusts only the cluster CA, optionally with a client cert."""
    context = ssl.create_default_context(cafile=str(ca_path))
    if cert_path is not None:
        context.load_cert_chain(str(cert_path), str(key_path) if key_path else None)
    return context


# --------------------------------------------------------------------------------------------
# Internals


class _LeafSpec(msgspec.Struct, frozen=True):
    """What a leaf certificate must say; compared against existing files for reuse."""

    common_name: str
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    server: bool
    client: bool

    @classmethod
    def make(
        cls,
        *,
        common_name: str,
        organizations: Iterable[str] = (),
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[IpLike] = (),
        server: bool,
        client: bool,
    ) -> _LeafSpec:
        return cls(
            common_name=common_name,
            organizations=tuple(dict.fromkeys(organizations)),
            dns_names=tuple(dict.fromkeys(dns_names)),
            ip_addresses=tuple(dict.fromkeys(ipaddress.ip_address(ip) for ip in ip_addresses)),
            server=server,
            client=client,
        )

    def subject(self) -> x509.Name:
        return x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in self.organizations]
            + [x509.NameAttribute(NameOID.COMMON_NAME, self.common_name)]
        )

    def usages(self) -> list[x509.ObjectIdentifier]:
        return [ExtendedKeyUsageOID.SERVER_AUTH] * self.server + [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ] * self.client

    def sans(self) -> list[x509.GeneralName]:
        return [x509.DNSName(d) for d in self.dns_names] + [
            x509.IPAddress(ip) for ip in self.ip_addresses
        ]

    def matches(self, cert: x509.Certificate) -> bool:
        if cert.subject != self.subject():
            return False
        try:
            usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            return False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = set(san.get_values_for_type(x509.DNSName))
            ips = set(san.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            dns, ips = set(), set()
        return (
            usages == set(self.usages())
            and dns == set(self.dns_names)
            and ips == set(self.ip_addresses)
        )


def _ensure_leaf(ca: CertAndKey, cert_path: Path, key_path: Path, spec: _LeafSpec) -> None:
    existing = _reuse(cert_path, key_path)
    if existing is not None and spec.matches(existing.cert) and _signed_by(existing.cert, ca.cert):
        return
    leaf = issue_cert(
        ca,
        common_name=spec.common_name,
        organizations=spec.organizations,
        dns_names=spec.dns_names,
        ip_addresses=spec.ip_addresses,
        server=spec.server,
        client=spec.client,
    )
    _write_pair(leaf, cert_path, key_path)


def _reuse_ca(cert_path: Path, key_path: Path) -> CertAndKey | None:
    ca = _reuse(cert_path, key_path)
    if ca is None or not _signed_by(ca.cert, ca.cert):
        return None
    try:
        if not ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return None
    except x509.ExtensionNotFound:
        return None
    return ca


def _reuse(cert_path: Path, key_path: Path) -> CertAndKey | None:
    """The pair on disk if it parses, belongs together and stays valid for a while."""
    try:
        pair = load_cert_and_key(cert_path, key_path)
    except (OSError, ValueError, TypeError):
        return None
    if pair.cert.public_key() != pair.key.public_key():
        return None
    now = _now()
    if not pair.cert.not_valid_before_utc <= now <= pair.cert.not_valid_after_utc - _RENEW_BEFORE:
        return None
    _restrict(key_path)
    return pair


def _valid_sa_pair(key_path: Path, pub_path: Path) -> bool:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        pub = serialization.load_pem_public_key(pub_path.read_bytes())
    except (OSError, ValueError, TypeError):
        return False
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != pub:
        return False
    _restrict(key_path)
    return True


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_identifier(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _write_pair(pair: CertAndKey, cert_path: Path, key_path: Path) -> None:
    # Key first: a reader never sees a new certificate next to an old key for long.
    _write_file(key_path, pair.key_pem, _KEY_MODE)
    _write_file(cert_path, pair.cert_pem, _CERT_MODE)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace ``path``; the file has ``mode`` from its first byte on."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with open(fd, "wb") as f:
        os.fchmod(fd, mode)  # the umask may have removed bits we want
        f.write(data)
    os.replace(tmp, path)


def _restrict(key_path: Path) -> None:
    if key_path.stat().st_mode & 0o777 != _KEY_MODE:
        key_path.chmod(_KEY_MODE)


def _private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _first_service_ip(service_cidr: str) -> str:
    """The ClusterIP of the ``kubernetes`` service: the first address of the service range."""
    network = ipaddress.ip_network(service_cidr, strict=True)
    return str(network.network_address + 1)


def _split_sans(sans: Iterable[str]) -> tuple[list[str], list[str]]:
    dns: list[str] = []
    ips: list[str] = []
    for san in sans:
        try:
            ips.append(str(ipaddress.ip_address(san)))
        except ValueError:
            dns.append(san)
    return dns, ips


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
