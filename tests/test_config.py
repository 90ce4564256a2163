"""Kubelet settings read from the command line: clear errors that say what to write."""

from __future__ import annotations

import pytest

from mobius.config import cluster_dns, gres_map
from mobius.errors import ConfigError


def test_gres_map_adds_to_the_defaults() -> None:
    m = gres_map(["example.com/fpga=fpga", "nvidia.com/gpu=gpu:a100"])
    assert m == {"nvidia.com/gpu": "gpu:a100", "amd.com/gpu": "gpu", "example.com/fpga": "fpga"}


@pytest.mark.parametrize("bad", ["fpga", "example.com/fpga=", "=fpga", "x/y=a b", "a/b/c=gpu"])
def test_bad_gres_pairs_say_how_to_write_them(bad: str) -> None:
    with pytest.raises(ConfigError, match="write RESOURCE=GRES"):
        gres_map([bad])


def test_cluster_dns_takes_addresses_only() -> None:
    assert cluster_dns(["10.96.0.10", "fd00::a"]) == ("10.96.0.10", "fd00::a")
    with pytest.raises(ConfigError, match="IP address"):
        cluster_dns(["kube-dns.kube-system"])
