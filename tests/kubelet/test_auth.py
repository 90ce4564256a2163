"""Authentication and authorization of the kubelet API, as the kubelet's server/auth.go does it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from mobius.controlplane.pki import issue_cert, new_ca
from mobius.kubelet.auth import (
    Attributes,
    Authenticator,
    AuthMiddleware,
    FrontProxy,
    User,
    authorize,
    metrics_api_attributes,
    request_attributes,
    user_from_certificate,
)


@pytest.mark.parametrize(
    ("method", "path", "verb", "subresource"),
    [
        ("GET", "/containerLogs/ns/p/c", "get", "proxy"),
        ("POST", "/exec/ns/p/c", "create", "proxy"),
        ("GET", "/pods", "get", "proxy"),
        ("GET", "/healthz", "get", "proxy"),
        ("GET", "/stats/summary", "get", "stats"),
        ("GET", "/stats", "get", "stats"),
        ("GET", "/statsfoo", "get", "proxy"),
        ("GET", "/metrics", "get", "metrics"),
        ("GET", "/metrics/resource", "get", "metrics"),
        ("GET", "/metricsx", "get", "proxy"),
        ("GET", "/logs/", "get", "log"),
        ("GET", "/logs/messages", "get", "log"),
        ("PUT", "/x", "update", "proxy"),
        ("PATCH", "/x", "patch", "proxy"),
        ("DELETE", "/x", "delete", "proxy"),
        ("HEAD", "/x", "", "proxy"),
    ],
)
def test_path_and_method_to_attributes(method: str, path: str, verb: str, subresource: str) -> None:
    assert request_attributes(method, path, node_name="n1") == Attributes(
        verb=verb, subresource=subresource, name="n1"
    )


def test_certificate_names_the_user_and_groups() -> None:
    ca = new_ca()
    cert = issue_cert(
        ca,
        common_name="kube-apiserver-kubelet-client",
        organizations=["system:masters"],
        server=False,
        client=True,
    )
    from cryptography.hazmat.primitives import serialization

    user = user_from_certificate(cert.cert.public_bytes(serialization.Encoding.DER))
    assert user.name == "kube-apiserver-kubelet-client"
    assert user.groups == ("system:masters", "system:authenticated")


class FakeApi:
    def __init__(self, *, tokens: dict[str, str], allowed: set[str]):
        self.tokens = tokens
        self.allowed_users = allowed
        self.calls: list[tuple[str, Any]] = []

    async def create(self, path: str, body: Any) -> bytes:
        self.calls.append((path, body))
        await trio.lowlevel.checkpoint()
        if path.endswith("tokenreviews"):
            user = self.tokens.get(body["spec"]["token"])
            status = (
                {"authenticated": True, "user": {"username": user, "groups": ["g"]}} if user else {}
            )
            return json.dumps({"status": status}).encode()
        spec = body["spec"]
        ok = (
            spec["user"] in self.allowed_users
            and spec["resourceAttributes"]["subresource"] == "proxy"
        )
        return json.dumps({"status": {"allowed": ok}}).encode()


async def test_tokens_reviews_and_cache(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi(tokens={"good": "alice", "meh": "bob"}, allowed={"alice"})
    auth = Authenticator(api, node_name="n1", ttl=10)

    async def ask(token: str, path: str = "/containerLogs/a/b/c") -> tuple[int, str]:
        d = await authorize(
            auth, method="GET", path=path, cert_der=None, authorization=f"Bearer {token}"
        )
        return d.status, d.message

    assert await ask("good") == (200, "")
    assert await ask("good") == (200, "")
    assert len(api.calls) == 2  # one TokenReview, one SubjectAccessReview: then cached
    assert await ask("meh") == (
        403,
        "Forbidden (user=bob, verb=get, resource=nodes, subresource=proxy)",
    )
    assert await ask("good", "/stats/summary") == (
        403,
        "Forbidden (user=alice, verb=get, resource=nodes, subresource=stats)",
    )
    assert await ask("nope") == (401, "Unauthorized")
    d = await authorize(auth, method="GET", path="/x", cert_der=None, authorization="")
    assert d.status == 401
    calls = len(api.calls)
    await trio.sleep(11)
    assert await ask("good") == (200, "")
    assert len(api.calls) == calls + 2  # the cache expired
    sar = api.calls[-1][1]["spec"]
    assert sar["resourceAttributes"] == {
        "verb": "get",
        "resource": "nodes",
        "subresource": "proxy",
        "name": "n1",
        "version": "v1",
        "group": "",
        "namespace": "",
    }
    assert sar["groups"] == ["g"]


async def test_middleware_answers_401_and_passes_the_user_on() -> None:
    seen: list[User] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["user"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    api = FakeApi(tokens={"good": "alice"}, allowed={"alice"})
    mw = AuthMiddleware(app, auth=Authenticator(api, node_name="n1"))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": []}
    await mw(dict(scope), receive, send)
    assert sent[0]["status"] == 401
    assert sent[1]["body"] == b"Unauthorized"
    sent.clear()
    await mw({**scope, "headers": [(b"authorization", b"Bearer good")]}, receive, send)
    assert sent[0]["status"] == 200
    assert seen == [User(name="alice", groups=("g",))]


# --- the aggregation layer's front proxy (metrics.k8s.io) ----------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods", ("list", "pods", "ns1", "")),
        ("/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods/p1", ("get", "pods", "ns1", "p1")),
        ("/apis/metrics.k8s.io/v1beta1/pods", ("list", "pods", "", "")),
        ("/apis/metrics.k8s.io/v1beta1/nodes/n1", ("get", "nodes", "", "n1")),
        ("/apis/metrics.k8s.io/v1beta1", None),
        ("/apis/metrics.k8s.io/", None),
    ],
)
def test_metrics_api_attributes(path: str, expected: tuple[str, str, str, str] | None) -> None:
    attrs = metrics_api_attributes("GET", path)
    if expected is None:
        assert attrs is None
        return
    assert attrs is not None
    assert (attrs.verb, attrs.resource, attrs.namespace, attrs.name) == expected
    assert (attrs.group, attrs.version, attrs.subresource) == ("metrics.k8s.io", "v1beta1", "")


def _der(pair: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(pair.cert.public_bytes(serialization.Encoding.DER))


class MetricsApi(FakeApi):
    """A stand-in for the API server's reviews (a unit test of the decision logic; the e2e tests
    run it against the real API server): alice may list pod metrics in ns1 only."""

    async def create(self, path: str, body: Any) -> bytes:
        self.calls.append((path, body))
        await trio.lowlevel.checkpoint()
        ra = body["spec"]["resourceAttributes"]
        ok = (
            body["spec"]["user"] == "alice"
            and ra["group"] == "metrics.k8s.io"
            and ra["namespace"] == "ns1"
        )
        return json.dumps({"status": {"allowed": ok}}).encode()


async def test_front_proxy_acts_for_the_user_in_its_headers() -> None:
    proxy_ca, cluster_ca = new_ca(common_name="front-proxy-ca"), new_ca()
    proxy = issue_cert(proxy_ca, common_name="front-proxy-client", server=False, client=True)
    stranger = issue_cert(proxy_ca, common_name="someone-else", server=False, client=True)
    forged = issue_cert(cluster_ca, common_name="front-proxy-client", server=False, client=True)
    api = MetricsApi(tokens={}, allowed=set())
    auth = Authenticator(
        api,
        node_name="n1",
        front_proxy=FrontProxy(ca=proxy_ca.cert, names=frozenset({"front-proxy-client"})),
    )
    headers = [
        (b"X-Remote-User", b"alice"),
        (b"X-Remote-Group", b"devs"),
        (b"X-Remote-Extra-Scopes%2Fx", b"y"),
    ]

    async def ask(cert: Any, path: str, hdrs: Any = headers) -> int:
        d = await authorize(
            auth, method="GET", path=path, cert_der=_der(cert), authorization="", headers=hdrs
        )
        return d.status

    pods = "/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods"
    assert await ask(proxy, pods) == 200
    spec = api.calls[-1][1]["spec"]
    assert (spec["user"], spec["groups"], spec["extra"]) == ("alice", ["devs"], {"scopes/x": ["y"]})
    assert await ask(proxy, "/apis/metrics.k8s.io/v1beta1/namespaces/ns2/pods") == 403
    assert await ask(proxy, "/apis/metrics.k8s.io/v1beta1") == 200  # discovery: any user
    assert await ask(proxy, pods, hdrs=[]) == 401  # a proxy naming nobody
    assert await ask(stranger, pods) == 401  # signed by the proxy CA, but not an allowed name
    # A cluster certificate with the proxy's name is just a user called front-proxy-client.
    calls = len(api.calls)
    assert await ask(forged, pods) == 403
    assert api.calls[calls][1]["spec"]["user"] == "front-proxy-client"


async def test_front_proxy_reaches_only_the_metrics_api_and_discovery() -> None:
    proxy_ca = new_ca(common_name="front-proxy-ca")
    proxy = issue_cert(proxy_ca, common_name="front-proxy-client", server=False, client=True)
    auth = Authenticator(
        MetricsApi(tokens={}, allowed=set()),
        node_name="n1",
        front_proxy=FrontProxy(ca=proxy_ca.cert, names=frozenset({"front-proxy-client"})),
    )
    headers = [(b"X-Remote-User", b"system:masters-user"), (b"X-Remote-Group", b"system:masters")]
    for path, status in [
        ("/openapi/v2", 200),
        ("/apis", 200),
        ("/containerLogs/a/b/c", 403),
        ("/pods", 403),
    ]:
        d = await authorize(
            auth, method="GET", path=path, cert_der=_der(proxy), authorization="", headers=headers
        )
        assert d.status == status, path
