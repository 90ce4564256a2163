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


def test_sacct_states() -> None:
    from mobius.slurm.commands import accounting_storage, parse_sacct_states

    text = "41|COMPLETED\n42|CANCELLED by 1000\n43_2|TIMEOUT\n\n44|OUT_OF_MEMORY\n"
    assert parse_sacct_states(text) == {
        "41": "COMPLETED",
        "42": "CANCELLED",
        "43_2": "TIMEOUT",
        "44": "OUT_OF_MEMORY",
    }
    with pytest.raises(ParseError, match="line 1"):
        parse_sacct_states("garbage without a bar\n")
    config = "AccountingStorageHost   = db\nAccountingStorageType   = accounting_storage/slurmdbd\n"
    assert accounting_storage(config) == "accounting_storage/slurmdbd"
    assert accounting_storage("ClusterName = x\n") == ""
