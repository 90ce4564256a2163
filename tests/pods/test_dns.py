"""A pod's resolv.conf per dnsPolicy and dnsConfig, as the kubelet writes it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mobius.errors import InvalidPodSpec
from mobius.models import Pod
from mobius.pods.dns import parse_resolv_conf, pod_resolv_conf

NODE = """# the node's
domain ignored.example
search site.example hpc.example
nameserver 10.0.0.2
nameserver 10.0.0.3 ; trailing
options timeout:2 rotate
"""


def pod(**spec: Any) -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": "p", "namespace": "team"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
        },
        Pod,
    )


def test_node_file_is_read_as_a_resolver_reads_it() -> None:
    conf = parse_resolv_conf(NODE)
    assert conf.nameservers == ("10.0.0.2", "10.0.0.3")
    assert conf.searches == ("site.example", "hpc.example")
    assert conf.options == ("timeout:2", "rotate")


def test_cluster_first_puts_the_cluster_dns_and_the_namespace_first() -> None:
    d = pod_resolv_conf(pod(), node_resolv_conf=NODE, cluster_dns=("10.96.0.10",))
    assert d.resolv_conf == (
        "nameserver 10.96.0.10\n"
        "search team.svc.cluster.local svc.cluster.local cluster.local site.example hpc.example\n"
        "options ndots:5\n"
    )
    assert d.warning == ""


def test_cluster_first_without_cluster_dns_falls_back_and_warns() -> None:
    d = pod_resolv_conf(pod(), node_resolv_conf=NODE)
    assert d.resolv_conf is None  # the runtime's own copy of the node's file
    assert "no cluster DNS is configured" in d.warning


def test_host_network_uses_the_node_unless_with_host_net() -> None:
    d = pod_resolv_conf(pod(hostNetwork=True), node_resolv_conf=NODE, cluster_dns=("10.96.0.10",))
    assert d.resolv_conf is None
    d = pod_resolv_conf(
        pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"),
        node_resolv_conf=NODE,
        cluster_dns=("10.96.0.10",),
    )
    assert d.resolv_conf is not None
    assert d.resolv_conf.startswith("nameserver 10.96.0.10\n")


def test_none_takes_dns_config_alone() -> None:
    spec = {
        "dnsPolicy": "None",
        "dnsConfig": {
            "nameservers": ["1.2.3.4"],
            "searches": ["a.example", "a.example", "b.example."],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
    }
    d = pod_resolv_conf(pod(**spec), node_resolv_conf=NODE, cluster_dns=("10.96.0.10",))
    assert d.resolv_conf == "nameserver 1.2.3.4\nsearch a.example b.example\noptions ndots:2 edns0\n"


def test_dns_config_merges_into_default_and_cluster_first() -> None:
    extra = {"nameservers": ["9.9.9.9", "10.0.0.2"], "options": [{"name": "timeout", "value": "5"}]}
    d = pod_resolv_conf(pod(dnsPolicy="Default", dnsConfig=extra), node_resolv_conf=NODE)
    assert d.resolv_conf == (
        "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 9.9.9.9\n"
        "search site.example hpc.example\noptions timeout:5 rotate\n"
    )
    d = pod_resolv_conf(pod(dnsConfig={"options": [{"name": "ndots", "value": "1"}]}),
                        node_resolv_conf=NODE, cluster_dns=("10.96.0.10",))
    assert d.resolv_conf is not None
    assert d.resolv_conf.endswith("options ndots:1\n")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"dnsPolicy": "Sometimes"}, "spec.dnsPolicy"),
        ({"dnsPolicy": "None"}, "spec.dnsConfig.nameservers"),
        ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1\nnameserver 6.6.6.6"]}}, "spec.dnsConfig"),
        ({"dnsConfig": {"options": [{"value": "1"}]}}, "spec.dnsConfig.options[0]"),
        ({"dnsConfig": {"options": [{"name": "ndots", "value": "1 rotate"}]}}, "spec.dnsConfig.options"),
        ({"dnsConfig": {"searches": "a.example"}}, "spec.dnsConfig.searches"),
    ],
)
def test_bad_dns_settings_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPodSpec) as err:
        pod_resolv_conf(pod(**spec), node_resolv_conf=NODE, cluster_dns=("10.96.0.10",))
    assert err.value.field == field
