"""Who may use the kubelet API, decided the way the kubelet decides it.

Authentication: a TLS client certificate signed by the client CA (verified in the handshake; the
CN is the user, each O a group), else a bearer token, reviewed by the API server
(``TokenReview``). Neither: 401 ``Unauthorized``.

Authorization: a ``SubjectAccessReview`` for the node object, with the verb from the HTTP method
and the subresource from the path, exactly as the kubelet's ``pkg/kubelet/server/auth.go`` maps
them (:func:`request_attributes`): ``/stats/*`` -> ``nodes/stats``, ``/metrics*`` ->
``nodes/metrics``, ``/logs/*`` -> ``nodes/log``, everything else (``/containerLogs``, ``/exec``,
``/pods``, ``/healthz``...) -> ``nodes/proxy``. Denied: 403 with the kubelet's message.
Allowed decisions and authenticated tokens are cached briefly, so a burst of requests costs one
review.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol
from urllib.parse import unquote

import msgspec
import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from mobius.errors import ApiError, ApiUnreachable

log = logging.getLogger(__name__)

CACHE_SECONDS = 10.0

_VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class User(msgspec.Struct, frozen=True):
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Attributes(msgspec.Struct, frozen=True):
    """What a request asks to do, as a SubjectAccessReview's resourceAttributes."""

    verb: str
    subresource: str
    resource: str = "nodes"
    name: str = ""
    version: str = "v1"
    group: str = ""
    namespace: str = ""


METRICS_API = "/apis/metrics.k8s.io/"


_DISCOVERY = frozenset({"/apis", METRICS_API.rstrip("/"), METRICS_API + "v1beta1"})
"""Paths every authenticated user may read, as on any API server."""


def metrics_api_attributes(method: str, path: str) -> Attributes | None:
    """Attributes of a request for objects of the ``metrics.k8s.io`` API this server also
    serves (proxied by the API server's aggregation layer); None for any other request."""
    if not path.startswith(METRICS_API):
        return None
    parts = path.removeprefix(METRICS_API).strip("/").split("/")
    if len(parts) < 2 or method != "GET":
        return None
    version, rest = parts[0], parts[1:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    return Attributes(
        verb="get" if name else "list",
        subresource="",
        resource=resource,
        name=name,
        version=version,
        group="metrics.k8s.io",
        namespace=namespace,
    )


def _is_subpath(subpath: str, path: str) -> bool:
    path = path.removesuffix("/")
    return subpath == path or (subpath.startswith(path) and subpath[len(path)] == "/")


def request_attributes(method: str, path: str, *, node_name: str) -> Attributes:
    """The kubelet's ``GetRequestAttributes``: HTTP method and path -> authorizer attributes."""
    subresource = "proxy"
    if _is_subpath(path, "/stats/"):
        subresource = "stats"
    elif _is_subpath(path, "/metrics"):
        subresource = "metrics"
    elif _is_subpath(path, "/logs/"):
        subresource = "log"
    return Attributes(verb=_VERBS.get(method, ""), subresource=subresource, name=node_name)


def forbidden_message(user: User, attrs: Attributes) -> str:
    return (
        f"Forbidden (user={user.name}, verb={attrs.verb}, resource={attrs.resource}, "
        f"subresource={attrs.subresource})"
    )


def user_from_certificate(der: bytes | x509.Certificate) -> User:
    """A verified client certificate -> its user: CN is the name, each O a group."""
    cert = x509.load_der_x509_certificate(der) if isinstance(der, bytes) else der
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return User(name=cn[0] if cn else "", groups=(*orgs, "system:authenticated"))


class FrontProxy(msgspec.Struct, frozen=True):
    """The API server's aggregation layer: its client certificates are issued by ``ca`` with a
    CN in ``names``, and the user it acts for is in the ``X-Remote-*`` headers."""

    ca: x509.Certificate
    names: frozenset[str]

    def issued(self, cert: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def user(self, cert: x509.Certificate, headers: Headers) -> User | None:
        """The user the proxy names, or None (not an allowed proxy, or no user named)."""
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cn or str(cn[0].value) not in self.names:
            return None
        name, uid, groups = "", "", []
        extra: dict[str, list[str]] = {}
        for key, value in headers:
            k, v = key.decode("latin-1").lower(), value.decode("latin-1")
            if k == "x-remote-user":
                name = name or v
            elif k == "x-remote-uid":
                uid = uid or v
            elif k == "x-remote-group":
                groups.append(v)
            elif k.startswith("x-remote-extra-"):
                extra.setdefault(unquote(k.removeprefix("x-remote-extra-")), []).append(v)
        if not name:
            return None
        return User(
            name=name,
            groups=tuple(groups),
            uid=uid,
            extra=tuple((k, tuple(v)) for k, v in sorted(extra.items())),
        )


Headers = Sequence[tuple[bytes, bytes]]


class _ReviewUser(msgspec.Struct, rename="camel"):
    username: str = ""
    uid: str = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}


class _TokenReviewStatus(msgspec.Struct):
    authenticated: bool = False
    user: _ReviewUser = msgspec.field(default_factory=_ReviewUser)
    error: str = ""


class _TokenReview(msgspec.Struct):
    status: _TokenReviewStatus = msgspec.field(default_factory=_TokenReviewStatus)


class _AccessStatus(msgspec.Struct):
    allowed: bool = False
    denied: bool = False
    reason: str = ""


class _AccessReview(msgspec.Struct):
    status: _AccessStatus = msgspec.field(default_factory=_AccessStatus)


_token_review = msgspec.json.Decoder(_TokenReview)
_access_review = msgspec.json.Decoder(_AccessReview)


class ReviewClient(Protocol):
    """The part of :class:`mobius.kube.client.KubeClient` the reviews need."""

    async def create(self, path: str, body: Any) -> bytes: ...


class Authenticator:
    """TokenReview and SubjectAccessReview against the API server, with a short cache."""

    def __init__(
        self,
        kube: ReviewClient,
        *,
        node_name: str,
        ttl: float = CACHE_SECONDS,
        front_proxy: FrontProxy | None = None,
    ):
        self.kube = kube
        self.node_name = node_name
        self.front_proxy = front_proxy
        self.ttl = ttl
        self._tokens: dict[str, tuple[float, User]] = {}
        self._allowed: dict[tuple[User, Attributes], float] = {}

    def __repr__(self) -> str:
        cached = len(self._tokens) + len(self._allowed)
        return f"<Authenticator node={self.node_name} cached={cached}>"

    async def user_for_token(self, token: str) -> User | None:
        now = trio.current_time()
        hit = self._tokens.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        review = _token_review.decode(
            await self.kube.create("/apis/authentication.k8s.io/v1/tokenreviews", body)
        )
        if not review.status.authenticated:
            return None
        u = review.status.user
        user = User(
            name=u.username,
            groups=tuple(u.groups),
            uid=u.uid,
            extra=tuple((k, tuple(v)) for k, v in sorted(u.extra.items())),
        )
        self._prune(now)
        self._tokens[token] = (now + self.ttl, user)
        return user

    async def allowed(self, user: User, attrs: Attributes) -> bool:
        now = trio.current_time()
        key = (user, attrs)
        if self._allowed.get(key, 0.0) > now:
            return True
        spec: dict[str, Any] = {
            "user": user.name,
            "groups": list(user.groups),
            "resourceAttributes": {
                "verb": attrs.verb,
                "resource": attrs.resource,
                "subresource": attrs.subresource,
                "name": attrs.name,
                "version": attrs.version,
                "group": attrs.group,
                "namespace": attrs.namespace,
            },
        }
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        review = _access_review.decode(
            await self.kube.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        )
        if review.status.allowed:
            self._prune(now)
            self._allowed[key] = now + self.ttl
        return review.status.allowed

    def _prune(self, now: float) -> None:
        if len(self._tokens) > 1000:
            self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
        if len(self._allowed) > 1000:
            self._allowed = {k: v for k, v in self._allowed.items() if v > now}


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _plain(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


class Decision(msgspec.Struct, frozen=True):
    """The outcome for one request: ``status`` 200 lets it through as ``user``."""

    status: int
    message: str = ""
    user: User | None = None


async def authorize(
    auth: Authenticator,
    *,
    method: str,
    path: str,
    cert_der: bytes | None,
    authorization: str,
    headers: Headers = (),
) -> Decision:
    """Authenticate and authorise one request to the kubelet API (any transport: ASGI routes,
    SPDY/WebSocket upgrades). ``cert_der``: the verified client certificate, if any;
    ``authorization``: the Authorization header, or ""; ``headers``: all of them (the front
    proxy's ``X-Remote-*``)."""
    try:
        user: User | None = None
        proxied = False
        if cert_der:
            cert = x509.load_der_x509_certificate(cert_der)
            if auth.front_proxy is not None and auth.front_proxy.issued(cert):
                user, proxied = auth.front_proxy.user(cert, headers), True
            else:
                user = user_from_certificate(cert)
        else:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                user = await auth.user_for_token(token.strip())
        if user is None:
            return Decision(401, "Unauthorized")
        if proxied or _is_subpath(path, "/apis"):
            # The aggregation layer reaches the metrics API and discovery, nothing else.
            if _is_subpath(path, "/openapi") or path.rstrip("/") in _DISCOVERY:
                return Decision(200, "", user)
            metrics_attrs = metrics_api_attributes(method, path)
            if metrics_attrs is None:
                return Decision(403, "Forbidden: the front proxy reaches metrics.k8s.io only", user)
            attrs = metrics_attrs
        else:
            attrs = request_attributes(method, path, node_name=auth.node_name)
        if not await auth.allowed(user, attrs):
            log.info("%s", forbidden_message(user, attrs))
            return Decision(403, forbidden_message(user, attrs), user)
    except (ApiError, ApiUnreachable) as exc:
        log.warning("kubelet API: authentication or authorization failed: %s", exc)
        return Decision(500, "Authorization error: the API server could not be asked")
    return Decision(200, "", user)


class AuthMiddleware:
    """ASGI middleware: :func:`authorize`, then pass the request on with ``scope["user"]``.

    The client certificate comes in ``scope["extensions"]["tls"]["client_cert_der"]`` (set by
    the server for verified certificates only).
    """

    def __init__(self, app: App, *, auth: Authenticator):
        self.app = app
        self.auth = auth

    def __repr__(self) -> str:
        return f"<AuthMiddleware {self.auth!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        decision = await authorize(
            self.auth,
            method=scope["method"],
            path=scope["path"],
            cert_der=scope.get("extensions", {}).get("tls", {}).get("client_cert_der"),
            authorization=header.decode("latin-1"),
            headers=scope.get("headers", []),
        )
        if decision.status != 200:
            await _plain(send, decision.status, decision.message)
            return
        scope["user"] = decision.user
        await self.app(scope, receive, send)
