"""The whole path once: kubectl -> API server -> Mobius -> sbatch -> podman -> status and logs back."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def _phase(stack: Stack, name: str) -> str:
    return stack.get_json("pod", name).get("status", {}).get("phase", "")


def test_node_is_ready_and_its_lease_is_renewed(stack: Stack) -> None:
    node = stack.get_json("node", "mobius")
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert int(node["status"]["capacity"]["cpu"]) >= 1
    first = stack.get_json("lease", "-n", "kube-node-lease", "mobius")["spec"]["renewTime"]
    renewed = stack.wait_for(
        "the node lease to be renewed",
        lambda: (
            (t := stack.get_json("lease", "-n", "kube-node-lease", "mobius")["spec"]["renewTime"])
            != first
            and t
        ),
        timeout=30,
    )
    assert datetime.fromisoformat(renewed) > datetime.fromisoformat(first)


def test_pod_succeeds_and_its_logs_come_back(stack: Stack) -> None:
    stack.kubectl(
        "run", "hello", "--image=busybox", "--restart=Never", "--", "sh", "-c", "echo hi; exit 0"
    )
    stack.wait_for(
        "hello to succeed",
        lambda: (
            _phase(stack, "hello") == "Succeeded"
            or (
                _phase(stack, "hello") == "Failed"
                and pytest.fail(str(stack.get_json("pod", "hello")["status"]))
            )
        ),
    )
    pod = stack.get_json("pod", "hello")
    assert pod["spec"]["nodeName"] == "mobius"
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["state"]["terminated"]["exitCode"] == 0
    assert cs["state"]["terminated"]["reason"] == "Completed"
    assert stack.kubectl("logs", "hello") == "hi\n"


def test_pod_exiting_3_fails_with_exit_code_3(stack: Stack) -> None:
    stack.kubectl(
        "run", "three", "--image=busybox", "--restart=Never", "--", "sh", "-c", "echo bye; exit 3"
    )
    stack.wait_for("three to fail", lambda: _phase(stack, "three") == "Failed")
    (cs,) = stack.get_json("pod", "three")["status"]["containerStatuses"]
    assert cs["state"]["terminated"]["exitCode"] == 3
    assert cs["state"]["terminated"]["reason"] == "Error"
    assert stack.kubectl("logs", "three") == "bye\n"
    events = stack.kubectl("get", "events", "--field-selector=involvedObject.name=three")
    assert "Submitted" in events
