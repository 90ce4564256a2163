"""Parsing what sinfo says the cluster offers, and what sacct says of jobs that ended."""

from __future__ import annotations

from pathlib import Path

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

    text = (
        "41|41|COMPLETED|0:0|None|2024-06-01T12:00:00|2024-06-01T12:00:05|n1|a\n"
        "42|42|CANCELLED by 1000|0:15|None|2024-06-01T12:00:00|2024-06-01T12:01:00|n1|b|c\n"
        "43_2|45|TIMEOUT|0:15|TimeLimit|2024-06-01T12:00:00|2024-06-01T13:00:00|n1|array\n"
        "\n"
        "44|44|OUT_OF_MEMORY|0:125|None|2024-06-01T12:00:00|2024-06-01T12:00:09|n1|d\n"
        "44.batch|44.batch|OUT_OF_MEMORY|0:125||2024-06-01T12:00:00|2024-06-01T12:00:09|n1|batch\n"
    )
    # Keyed by the id sbatch answered (JobIDRaw); steps are not jobs.
    assert parse_sacct_states(text) == {
        "41": "COMPLETED",
        "42": "CANCELLED",
        "45": "TIMEOUT",
        "44": "OUT_OF_MEMORY",
    }
    assert parse_sacct_states("") == {}
    with pytest.raises(ParseError, match="line 1"):
        parse_sacct_states("garbage without a bar\n")
    with pytest.raises(ParseError, match="line 2"):
        parse_sacct_states(
            "41|41|COMPLETED|0:0|None|s|e|n1|a\n42|42|CANCELLED by|0:0|None|s|e|n1|b\n"
        )
    config = "AccountingStorageHost   = db\nAccountingStorageType   = accounting_storage/slurmdbd\n"
    assert accounting_storage(config) == "accounting_storage/slurmdbd"
    assert accounting_storage("ClusterName = x\n") == ""


async def test_sacct_asks_for_the_parsed_format(monkeypatch: pytest.MonkeyPatch) -> None:
    from mobius._fast import SACCT_FORMAT
    from mobius.slurm.commands import SlurmClient

    calls: list[list[str]] = []
    fixture = Path(__file__).parents[1] / "_fast" / "data" / "sacct.synthetic.txt"

    async def run(argv: list[str], *, stdin: bytes | None = None) -> str:
        calls.append(list(argv))
        return fixture.read_text()

    client = SlurmClient()
    monkeypatch.setattr(client, "run", run)
    assert await client.sacct([]) == {}
    states = await client.sacct(["4009", "4010", "4011"])
    assert calls == [
        ["sacct", "--noheader", "--parsable2", "--allocations", f"--format={SACCT_FORMAT}",
         "--jobs=4009,4010,4011"]
    ]  # fmt: skip
    assert (states["4009"], states["4010"], states["4011"], states["4004"]) == (
        "CANCELLED",
        "RUNNING",
        "TIMEOUT",
        "PENDING",
    )
