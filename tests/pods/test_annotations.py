"""Slurm annotations: what users may ask sbatch for, and clear refusals for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobius.errors import InvalidPodSpec
from mobius.models import Pod
from mobius.pods.annotations import (
    mpi_containers,
    mpi_launcher,
    parse_flags,
    partition_of,
    sbatch_options,
)

P = "slurm.mobius.io/"


def test_typed_annotations() -> None:
    opts = sbatch_options(
        {
            P + "partition": "gpu",
            P + "account": "proj42",
            P + "qos": "long",
            P + "time": "2:00:00",
            P + "nodes": "2",
            P + "ntasks": "8",
            P + "gres": "gpu:a100:2",
            P + "constraint": "skylake&ib",
            P + "exclusive": "true",
            P + "reservation": "maint",
            "unrelated/x": "y",
        }
    )
    assert opts == [
        "--partition=gpu",
        "--account=proj42",
        "--qos=long",
        "--reservation=maint",
        "--gres=gpu:a100:2",
        "--constraint=skylake&ib",
        "--time=2:00:00",
        "--nodes=2",
        "--ntasks=8",
        "--exclusive",
    ]


def test_raw_flags_respect_quoting_and_short_forms() -> None:
    assert parse_flags(
        "--mail-type=END -p debug --mail-user 'a b@x' -N2 --exclusive", annotation="f"
    ) == ["--mail-type=END", "--partition=debug", "--mail-user=a b@x", "--nodes=2", "--exclusive"]


def test_hpk_flags_are_understood() -> None:
    assert sbatch_options({"slurm.hpk.io/flags": "--gres=gpu:1"}) == ["--gres=gpu:1"]
    assert partition_of({"slurm.hpk.io/flags": "-p a", P + "flags": "--partition=b"}) == "b"


@pytest.mark.parametrize(
    "flag",
    [
        "--output=/tmp/x",
        "--wrap=id",
        "--chdir=/home/other",
        "--job-name=x",
        "--array=1-3",
        "-o x",
        "--export=ALL",
        "--uid=0",
        "--dependency=afterok:1",
    ],
)
def test_unsafe_flags_are_refused_by_name(flag: str) -> None:
    with pytest.raises(InvalidPodSpec) as info:
        sbatch_options({P + "flags": flag})
    assert info.value.field == f"metadata.annotations[{P}flags]"
    name = flag.split("=")[0].split()[0]
    assert name in str(info.value) or "-o" in flag


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("time", "soon"),
        ("nodes", "two"),
        ("exclusive", "yes"),
        ("partition", "a b"),
        ("partition", "x;reboot"),
    ],
)
def test_bad_values_name_the_annotation(key: str, value: str) -> None:
    with pytest.raises(InvalidPodSpec, match=key):
        sbatch_options({P + key: value})


def test_unbalanced_quotes_and_missing_values() -> None:
    with pytest.raises(InvalidPodSpec, match="cannot split"):
        parse_flags("--mail-user 'x", annotation="f")
    with pytest.raises(InvalidPodSpec, match="needs a value"):
        parse_flags("--qos", annotation="f")
    with pytest.raises(InvalidPodSpec, match="takes no value"):
        parse_flags("--exclusive=yes", annotation="f")


@given(st.text(max_size=60))
def test_any_text_is_either_refused_or_allowed_options_only(text: str) -> None:
    try:
        opts = parse_flags(text, annotation="f")
    except InvalidPodSpec:
        return
    for opt in opts:
        assert opt.startswith("--")
        assert opt.split("=")[0] not in ("--output", "--wrap", "--chdir", "--job-name", "--export")
        assert "\n" not in opt


# --- MPI launch -----------------------------------------------------------------------------------


def _mpi_pod(annotations: dict[str, str], command: list[str] | None = None) -> Pod:
    import msgspec

    main: dict[str, object] = {"name": "solver", "image": "busybox"}
    if command is not None:
        main["command"] = command
    return msgspec.convert(
        {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "annotations": annotations},
            "spec": {
                "containers": [main, {"name": "side", "image": "busybox", "command": ["true"]}]
            },
        },
        Pod,
    )


def test_mpi_launcher_is_split_and_checked() -> None:
    assert mpi_launcher({}) == ()
    assert mpi_launcher({P + "mpi": "srun --mpi=pmix -n 4"}) == ("srun", "--mpi=pmix", "-n", "4")
    assert mpi_launcher({P + "mpi": "mpiexec -n '8'"}) == ("mpiexec", "-n", "8")
    for bad, why in [
        ("bash -c x", "must start with one of mpiexec, mpirun, srun"),
        ("", "must start with"),
        ("srun --output=/home/other/x", "--output is not allowed"),
        ("srun -D /tmp", "-D is not allowed"),
        ("mpirun -wdir /x", "-wdir is not allowed"),
        ("srun 'unclosed", "cannot split"),
    ]:
        with pytest.raises(InvalidPodSpec, match=why) as err:
            mpi_launcher({P + "mpi": bad})
        assert err.value.field == f"metadata.annotations[{P}mpi]"


def test_mpi_containers_default_to_the_first_and_must_exist() -> None:
    assert mpi_containers({P + "mpi": "srun"}, ["a", "b"]) == {"a"}
    assert mpi_containers({P + "mpi": "srun", P + "mpi-containers": "a, b"}, ["a", "b"]) == {
        "a",
        "b",
    }
    assert mpi_containers({P + "mpi-containers": "a"}, ["a"]) == set()  # no launcher: nothing
    with pytest.raises(InvalidPodSpec, match="zz: not an app container"):
        mpi_containers({P + "mpi": "srun", P + "mpi-containers": "a,zz"}, ["a"])


def test_mpi_rendering_per_runtime() -> None:
    from mobius.pods.script import render_job
    from mobius.runtime import Apptainer, Podman

    pod = _mpi_pod({P + "mpi": "mpiexec -n 4"}, command=["./solve"])
    apptainer = render_job(pod, pod_dir="/p", runtime=Apptainer()).script
    # Host launcher, one container per rank; the sidecar is left alone.
    assert 'mpiexec -n 4 "${APPTAINER[@]}" exec' in apptainer
    assert apptainer.count("mpiexec") == 1
    podman = render_job(pod, pod_dir="/p", runtime=Podman()).script
    assert """--entrypoint '["mpiexec", "-n", "4", "./solve"]'""" in podman
    with pytest.raises(InvalidPodSpec, match="set the command") as err:
        render_job(_mpi_pod({P + "mpi": "srun"}), pod_dir="/p", runtime=Podman())
    assert err.value.field == "spec.containers[0].command"
    # Apptainer needs no command: the launcher starts `apptainer run`.
    assert (
        'srun "${APPTAINER[@]}" run'
        in render_job(_mpi_pod({P + "mpi": "srun"}), pod_dir="/p", runtime=Apptainer()).script
    )
