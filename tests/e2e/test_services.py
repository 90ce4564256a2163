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


def test_pods_resolve_a_service_by_dns(stack: Stack) -> None:
    """The embedded CoreDNS answers a headless Service's name with its ready pods' addresses."""
    dns = (stack.home / "controlplane" / "Corefile").exists()
    if not dns:
        pytest.skip("this stack runs no cluster DNS (port 53 of this host was not free)")
    stack.kubectl(
        "run",
        "web",
        "--image=busybox",
        "--restart=Never",
        "--labels=app=web",
        "--",
        "sh",
        "-c",
        "mkdir -p /w && echo hi >/w/index.html && exec httpd -f -p 8080 -h /w",
    )
    stack.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]},
        }
    )
    try:
        ip = stack.wait_for(
            "web to run with an IP",
            lambda: stack.get_json("pod", "web").get("status", {}).get("podIP"),
        )
        stack.kubectl(
            "run",
            "client",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "until nslookup web.default.svc.cluster.local; do sleep 1; done; "
            "wget -qO- http://web:8080/; cat /etc/resolv.conf",
        )
        stack.wait_for(
            "client to finish",
            lambda: (
                stack.get_json("pod", "client").get("status", {}).get("phase")
                in ("Succeeded", "Failed")
            ),
            timeout=180,
        )
        out = stack.kubectl("logs", "client")
        assert ip in out  # the Service name answers with the pod's address
        assert "hi\n" in out  # and the short name, through the search path, reaches it
        assert "search default.svc.cluster.local svc.cluster.local cluster.local" in out
        assert stack.get_json("pod", "client")["status"]["phase"] == "Succeeded"
    finally:
        stack.kubectl(
            "delete", "pod", "web", "client", "--grace-period=1", "--wait=false", check=False
        )
        stack.kubectl("delete", "service", "web", check=False)
