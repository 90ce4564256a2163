"""Pod annotations that ask Slurm for what an HPC job needs, validated into sbatch options.

| annotation                      | sbatch option       | example                       |
|---------------------------------|---------------------|-------------------------------|
| `slurm.mobius.io/partition`     | `--partition`       | `gpu`                         |
| `slurm.mobius.io/account`       | `--account`         | `proj42`                      |
| `slurm.mobius.io/qos`           | `--qos`             | `long`                        |
| `slurm.mobius.io/time`          | `--time`            | `2:00:00`, `30`, `1-12`       |
| `slurm.mobius.io/nodes`         | `--nodes`           | `2`                           |
| `slurm.mobius.io/ntasks`        | `--ntasks`          | `8`                           |
| `slurm.mobius.io/gres`          | `--gres`            | `gpu:a100:2`                  |
| `slurm.mobius.io/constraint`    | `--constraint`      | `skylake&ib`                  |
| `slurm.mobius.io/exclusive`     | `--exclusive`       | `true`                        |
| `slurm.mobius.io/reservation`   | `--reservation`     | `maint`                       |
| `slurm.mobius.io/flags`         | any allowed options | `--mail-type=END --nice=10`   |
| `slurm.hpk.io/flags`            | as above (HPK)      | `--gres=gpu:1`                |
| `slurm.mobius.io/mpi`           | MPI launcher        | `srun --mpi=pmix`, `mpiexec -n 8` |
| `slurm.mobius.io/mpi-containers`| who it launches     | `solver` (default: first app container) |

MPI: with Apptainer/Singularity the launcher runs on the host and starts one container per rank
(`srun --mpi=pmix apptainer exec image app`, the hybrid model sites document); with Podman it
runs inside the container (the image brings its MPI), so the container needs a `command`.
Launcher options that would move the job's files or identity (`--output`, `--chdir`,
`--jobid`, ...) are refused like raw flags are.

Raw flags are split with shell quoting rules and each option is checked against an allow-list:
options that would redirect the job's files, change what it runs or how Mobius finds it again
(`--output`, `--wrap`, `--chdir`, `--job-name`, `--array`, ...) are refused, naming the flag.
Values set here come after the options Mobius derives from the pod spec, so they win.
"""

from __future__ import annotations

import re
import shlex

from mobius.errors import InvalidPodSpec

PREFIX = "slurm.mobius.io/"
HPK_FLAGS = "slurm.hpk.io/flags"

_TIME = re.compile(r"^(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2}|UNLIMITED|INFINITE)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.,:&|()\[\]*+=@-]+$")
_COUNT = re.compile(r"^\d+(-\d+)?$")

# Options an annotation may pass, with whether they take a value. Short forms map to long ones.
_ALLOWED: dict[str, bool] = {
    "--partition": True,
    "--account": True,
    "--qos": True,
    "--time": True,
    "--time-min": True,
    "--nodes": True,
    "--ntasks": True,
    "--ntasks-per-node": True,
    "--cpus-per-task": True,
    "--mem": True,
    "--mem-per-cpu": True,
    "--mem-per-gpu": True,
    "--gres": True,
    "--gpus": True,
    "--gpus-per-node": True,
    "--gpus-per-task": True,
    "--cpus-per-gpu": True,
    "--gpu-bind": True,
    "--constraint": True,
    "--prefer": True,
    "--exclusive": False,
    "--reservation": True,
    "--licenses": True,
    "--nice": True,
    "--begin": True,
    "--deadline": True,
    "--mail-type": True,
    "--mail-user": True,
    "--network": True,
    "--switches": True,
    "--cores-per-socket": True,
    "--sockets-per-node": True,
    "--threads-per-core": True,
    "--hint": True,
    "--distribution": True,
    "--exclude": True,
    "--nodelist": True,
    "--requeue": False,
    "--no-requeue": False,
    "--tmp": True,
    "--wckey": True,
    "--mincpus": True,
    "--spread-job": False,
    "--use-min-nodes": False,
    "--cpu-freq": True,
    "--oversubscribe": False,
    "--core-spec": True,
    "--thread-spec": True,
    "--acctg-freq": True,
    "--mcs-label": True,
    "--delay-boot": True,
    "--gpu-freq": True,
    "--profile": True,
    "--power": True,
    "--extra-node-info": True,
}
_SHORT = {
    "-p": "--partition",
    "-A": "--account",
    "-q": "--qos",
    "-t": "--time",
    "-N": "--nodes",
    "-n": "--ntasks",
    "-c": "--cpus-per-task",
    "-G": "--gpus",
    "-C": "--constraint",
    "-L": "--licenses",
    "-m": "--distribution",
    "-x": "--exclude",
    "-w": "--nodelist",
    "-s": "--oversubscribe",
    "-B": "--extra-node-info",
}
# Said explicitly, so the error can say why rather than just "unknown".
_REFUSED = {
    "--output": "Mobius collects the job's output itself",
    "--error": "Mobius collects the job's output itself",
    "--input": "the job script reads no input",
    "--open-mode": "Mobius collects the job's output itself",
    "--wrap": "the job script is generated from the pod spec",
    "--chdir": "the job runs in its pod folder",
    "--job-name": "the job name is how Mobius finds the job again",
    "--comment": "the comment names the pod",
    "--array": "one pod is one job",
    "--parsable": "set by Mobius",
    "--wait": "would block the submitter",
    "--test-only": "would submit nothing",
    "--uid": "jobs run as the submitting user",
    "--gid": "jobs run as the submitting user",
    "--get-user-env": "the job's environment comes from the pod spec",
    "--export": "the job's environment comes from the pod spec",
    "--export-file": "the job's environment comes from the pod spec",
    "--clusters": "Mobius watches the jobs of its own cluster only",
    "--signal": "set by Mobius from terminationGracePeriodSeconds",
    "--dependency": "pods do not depend on each other's jobs",
    "--hold": "a held job would leave its pod pending forever",
    "--batch": "set by the site",
}


def parse_flags(text: str, *, annotation: str) -> list[str]:
    """Split raw sbatch flags and check each against the allow-list; canonical ``--opt=value``."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidPodSpec(
            f"metadata.annotations[{annotation}]", f"cannot split {text!r}: {exc}"
        ) from None
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        field = f"metadata.annotations[{annotation}]"
        if not word.startswith("-"):
            raise InvalidPodSpec(field, f"{word!r} is not an sbatch option (options start with -)")
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            has_value = bool(eq)
        else:
            name, value = word[:2], word[2:]
            has_value = bool(value)
            if name not in _SHORT:
                raise InvalidPodSpec(field, f"{name} is not an allowed sbatch option")
            name = _SHORT[name]
        if name in _REFUSED:
            raise InvalidPodSpec(field, f"{name} is not allowed: {_REFUSED[name]}")
        if name not in _ALLOWED:
            raise InvalidPodSpec(field, f"{name} is not an allowed sbatch option")
        if _ALLOWED[name]:
            if not has_value:
                i += 1
                if i >= len(words):
                    raise InvalidPodSpec(field, f"{name} needs a value")
                value = words[i]
            if "\n" in value or "\0" in value:
                raise InvalidPodSpec(field, f"the value of {name} contains a line break")
            out.append(f"{name}={value}")
        else:
            if has_value:
                raise InvalidPodSpec(field, f"{name} takes no value")
            out.append(name)
        i += 1
    return out


def sbatch_options(annotations: dict[str, str]) -> list[str]:
    """The sbatch options a pod's annotations ask for; InvalidPodSpec naming the bad one."""
    out: list[str] = []

    def field(key: str) -> str:
        return f"metadata.annotations[{PREFIX}{key}]"

    for key in ("partition", "account", "qos", "reservation", "gres", "constraint"):
        if (value := annotations.get(PREFIX + key)) is not None:
            if not _NAME.match(value):
                raise InvalidPodSpec(
                    field(key), f"{value!r} has characters Slurm does not accept here"
                )
            out.append(f"--{key}={value}")
    if (value := annotations.get(PREFIX + "time")) is not None:
        if not _TIME.match(value.strip()):
            raise InvalidPodSpec(
                field("time"), f"{value!r} is not a Slurm time (e.g. 30, 2:00:00, 1-12)"
            )
        out.append(f"--time={value.strip()}")
    for key in ("nodes", "ntasks"):
        if (value := annotations.get(PREFIX + key)) is not None:
            if not _COUNT.match(value.strip()):
                raise InvalidPodSpec(field(key), f"{value!r} is not a count (e.g. 2 or 2-4)")
            out.append(f"--{key}={value.strip()}")
    if (value := annotations.get(PREFIX + "exclusive")) is not None:
        if value.lower() not in ("true", "false"):
            raise InvalidPodSpec(field("exclusive"), f"{value!r} must be true or false")
        if value.lower() == "true":
            out.append("--exclusive")
    for key in (HPK_FLAGS, PREFIX + "flags"):
        if (value := annotations.get(key)) is not None:
            out += parse_flags(value, annotation=key)
    return out


MPI = PREFIX + "mpi"
MPI_CONTAINERS = PREFIX + "mpi-containers"
_LAUNCHERS = frozenset({"srun", "mpiexec", "mpirun"})
_LAUNCHER_REFUSED = {
    "--output": "Mobius collects the containers' output itself",
    "-o": "Mobius collects the containers' output itself",
    "--error": "Mobius collects the containers' output itself",
    "-e": "Mobius collects the containers' output itself",
    "--input": "containers read no input",
    "-i": "containers read no input",
    "--chdir": "the job runs in its pod folder",
    "-D": "the job runs in its pod folder",
    "--jobid": "the launcher runs inside the pod's own job",
    "--uid": "jobs run as the submitting user",
    "--gid": "jobs run as the submitting user",
    "--pty": "containers have no terminal here",
    "--output-filename": "Mobius collects the containers' output itself",
    "-wdir": "the job runs in its pod folder",
    "--wdir": "the job runs in its pod folder",
}


def mpi_launcher(annotations: dict[str, str]) -> tuple[str, ...]:
    """The MPI launcher command a pod asks for (``srun --mpi=pmix``), split; () for none."""
    text = annotations.get(MPI)
    if text is None:
        return ()
    field = f"metadata.annotations[{MPI}]"
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidPodSpec(field, f"cannot split {text!r}: {exc}") from None
    if not words or words[0] not in _LAUNCHERS:
        raise InvalidPodSpec(
            field, f"{text!r} must start with one of {', '.join(sorted(_LAUNCHERS))}"
        )
    for word in words[1:]:
        name = word.split("=", 1)[0]
        if name in _LAUNCHER_REFUSED:
            raise InvalidPodSpec(field, f"{name} is not allowed: {_LAUNCHER_REFUSED[name]}")
        if "\n" in word or "\0" in word:
            raise InvalidPodSpec(field, f"{word!r} contains a line break")
    return tuple(words)


def mpi_containers(annotations: dict[str, str], app_containers: list[str]) -> frozenset[str]:
    """The app containers the MPI launcher starts (default: the first); InvalidPodSpec naming
    one that is not an app container of the pod."""
    if MPI not in annotations or not app_containers:
        return frozenset()
    text = annotations.get(MPI_CONTAINERS)
    if text is None:
        return frozenset(app_containers[:1])
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(app_containers))
    if unknown or not names:
        raise InvalidPodSpec(
            f"metadata.annotations[{MPI_CONTAINERS}]",
            f"{', '.join(unknown) if unknown else repr(text)}: not an app container of the pod "
            f"({', '.join(app_containers)})",
        )
    return names


def partition_of(annotations: dict[str, str]) -> str | None:
    """The partition a pod asks for, by annotation or raw flags (last one wins, as in sbatch)."""
    found = None
    for opt in sbatch_options(annotations):
        if opt.startswith("--partition="):
            found = opt.split("=", 1)[1]
    return found
