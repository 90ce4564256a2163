"""Every Service becomes headless through Mobius's admission webhook, registered by `mobius up`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def test_services_are_made_headless(stack: Stack) -> None:
    for name, spec in (
        ("plain", {"selector": {"app": "x"}, "ports": [{"port": 80}]}),
        (
            "nodeport",
            {
                "type": "NodePort",
                "selector": {"app": "x"},
                "ports": [{"port": 80, "nodePort": 30080}],
            },
        ),
        ("external", {"type": "ExternalName", "externalName": "example.org"}),
    ):
        out = stack.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps(
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}
            ),
        )
        assert name in out
    plain = stack.get_json("service", "plain")["spec"]
    assert (plain["clusterIP"], plain["type"]) == ("None", "ClusterIP")
    nodeport = stack.get_json("service", "nodeport")["spec"]
    assert (nodeport["clusterIP"], nodeport["type"]) == ("None", "ClusterIP")
    assert "nodePort" not in nodeport["ports"][0]
    external = stack.get_json("service", "external")["spec"]
    assert external["type"] == "ExternalName"
    assert external.get("clusterIP") in (None, "")
    # The API server's own Service keeps its virtual IP.
    assert stack.get_json("service", "kubernetes")["spec"]["clusterIP"] not in ("", "None")
    webhooks = stack.get_json("mutatingwebhookconfiguration", "mobius")["webhooks"]
    assert webhooks[0]["failurePolicy"] == "Fail"
    stack.kubectl("delete", "service", "plain", "nodeport", "external")
