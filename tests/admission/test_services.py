"""Services become headless: the patch, applied, gives what the API server will store."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from mobius.admission.services import headless_patch, review_response


def apply(doc: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal RFC 6902 applier for add/replace/remove on dict paths and list indices."""
    doc = copy.deepcopy(doc)
    for op in patch:
        *parents, last = op["path"].strip("/").split("/")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "remove":
            del node[key]
        else:
            node[key] = op["value"]
    return doc


def svc(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec}


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"type": "ClusterIP"},
        {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"]},
        {"clusterIP": "None"},
    ],
)
def test_cluster_ip_services_become_headless(spec: dict[str, Any]) -> None:
    out = apply(
        svc(**spec, ports=[{"port": 80}]), headless_patch(svc(**spec, ports=[{"port": 80}]))[0]
    )
    assert out["spec"]["clusterIP"] == "None"
    assert out["spec"]["clusterIPs"] == ["None"]
    assert out["spec"]["ports"] == [{"port": 80}]


def test_node_ports_go_with_a_warning() -> None:
    s = svc(type="NodePort", externalTrafficPolicy="Local", ports=[{"port": 80, "nodePort": 30080}])
    patch, warnings = headless_patch(s)
    out = apply(s, patch)
    assert out["spec"] == {
        "type": "ClusterIP",
        "ports": [{"port": 80}],
        "clusterIP": "None",
        "clusterIPs": ["None"],
    }
    assert any("NodePort" in w for w in warnings)


def test_external_name_is_left_alone() -> None:
    assert headless_patch(svc(type="ExternalName", externalName="example.org")) == ([], [])


def test_review_round_trip() -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u1", "operation": "CREATE", "object": svc(ports=[{"port": 53}])},
    }
    response = review_response(review)["response"]
    assert response["uid"] == "u1"
    assert response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"]))
    assert apply(svc(ports=[{"port": 53}]), patch)["spec"]["clusterIP"] == "None"


def test_updates_and_other_kinds_pass_unchanged() -> None:
    for request in (
        {"uid": "a", "operation": "UPDATE", "object": svc()},
        {"uid": "b", "operation": "CREATE", "object": {"kind": "Pod"}},
    ):
        response = review_response({"request": request})["response"]
        assert response == {"uid": request["uid"], "allowed": True}
