"""Parsing what sinfo says the cluster offers."""

from __future__ import annotations

import pytest

from mobius.errors import ParseError
from mobius.slurm.commands import gres_gpus, parse_capacity


def test_capacity_counts_each_node_once() -> None:
    text = "n1|64|256000|debug*|(null)\nn1|64|256000|long|(null)\ng1|32|512000+|gpu|gpu:a100:4(S:0-1)\n"
    cap = parse_capacity(text)
    assert (cap.nodes, cap.cpus, cap.memory_mb, cap.gpus) == (2, 96, 768000, 4)
    assert (cap.max_node_cpus, cap.max_node_memory_mb) == (64, 512000)
    assert cap.partitions == ("debug", "long", "gpu")


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [
        ("(null)", 0),
        ("gpu:2", 2),
        ("gpu:a100:4(S:0-1),nic:1", 4),
        ("gpu:v100:2,gpu:a100:1", 3),
        ("gpu", 0),
        ("mps:100", 0),
    ],
)
def test_gres_gpus(gres: str, gpus: int) -> None:
    assert gres_gpus(gres) == gpus


def test_garbage_names_the_line() -> None:
    with pytest.raises(ParseError, match="line 2"):
        parse_capacity("n1|1|100|p|(null)\nn2|lots|100|p|(null)\n")
