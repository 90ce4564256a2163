"""Pod -> Slurm batch script and sbatch arguments. Pure: no I/O, same pod same script.

The script is the contract between Mobius and Slurm, so it is written to be read: a header
naming the pod, small shell functions, one function per container. Every value taken from the
pod is passed through :func:`shlex.quote`; names that become shell identifiers are validated
first. The script writes control files (see :mod:`mobius.pods.records`) atomically, runs init
containers in order, starts app containers together, restarts them per ``restartPolicy`` with
back-off, forwards SIGTERM to the sandbox, and exits with the first failing container's code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from shlex import quote

import msgspec

from mobius.errors import InvalidPodSpec
from mobius.models import Container, Pod
from mobius.pods import probes
from mobius.pods.annotations import mpi_containers, mpi_launcher, sbatch_options
from mobius.pods.env import PodRefs, container_env, run_as
from mobius.pods.images import SHELL_PULL
from mobius.pods.logformat import SHELL_LOG_WRITER
from mobius.pods.quantity import cpus, megabytes, parse_quantity
from mobius.pods.volumes import VolumePlan, node_setup, plan_volumes
from mobius.runtime.base import ContainerRun, Mount, Runtime

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_MEMORY_MB = 256
BACKOFF_START, BACKOFF_MAX = 10, 300
DEFAULT_STATS_INTERVAL = 15  # seconds between usage samples (metrics-server's resolution)

# The usage sampler: every few seconds, the CPU time and resident memory of each container's
# processes, read from /proc by the job itself (the only place that sees them on any compute
# node, whatever cgroup setup the site has). A container's processes are the tree under the PID
# in c/<name>.pid (written by the runtime: podman's container process), else under the shell in
# c/<name>.shell minus its log readers. Each sample goes to usage/<name> in the pod folder (not
# under ctl/, whose changes make the status poller look again) as
# "<time µs> <cpu ns> <memory bytes> <previous time µs> <previous cpu ns>": with the previous
# sample beside it, a reader gets the CPU rate without keeping state.
SHELL_USAGE_SAMPLER = r"""
usage_sampler() {
  local every=$1 tick page c f line pid p root skip total mem now
  shift
  local -a names=("$@")
  local usage="$POD_DIR/usage"
  mkdir -p "$usage"
  tick=$(getconf CLK_TCK 2>/dev/null || echo 100)
  page=$(getconf PAGESIZE 2>/dev/null || echo 4096)
  local -A last_t=() last_cpu=()
  local nap=
  trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null; exit 0' TERM
  while :; do
    sleep "$every" & nap=$!
    wait "$nap" || return 0
    local -A parent=() cpu=() rss=()
    for f in /proc/[0-9]*/stat; do
      read -r line <"$f" 2>/dev/null || continue
      pid=${line%% *}
      set -f; set -- ${line##*) }; set +f
      [ $# -ge 22 ] || continue
      parent[$pid]=$2 cpu[$pid]=$((${12} + ${13} + ${14} + ${15})) rss[$pid]=${22}
    done
    now=${EPOCHREALTIME/./}
    for c in "${names[@]}"; do
      root= skip=
      if [ -s "$CTL/c/$c.pid" ]; then read -r root <"$CTL/c/$c.pid"
      elif [ -s "$CTL/c/$c.shell" ]; then read -r root skip <"$CTL/c/$c.shell"
      fi
      [ -n "$root" ] && [ -n "${parent[$root]:-}" ] || continue
      total=0 mem=0
      for pid in "${!parent[@]}"; do
        p=$pid
        while [ "$p" != "$root" ] && [ -n "${parent[$p]:-}" ] && [ "$p" -gt 1 ]; do
          case " $skip " in *" $p "*) p=; break ;; esac
          p=${parent[$p]}
        done
        [ "$p" = "$root" ] || continue
        total=$((total + cpu[$pid])) mem=$((mem + rss[$pid]))
      done
      total=$((total * 1000000000 / tick)) mem=$((mem * page))
      printf '%s\n' "$now $total $mem ${last_t[$c]:-0} ${last_cpu[$c]:-0}" >"$usage/$c.tmp" \
        && mv -f "$usage/$c.tmp" "$usage/$c"
      last_t[$c]=$now last_cpu[$c]=$total
    done
  done
}
"""


class JobSpec(msgspec.Struct, frozen=True):
    """What to hand to sbatch: the script text and the command-line options."""

    script: str
    sbatch_args: tuple[str, ...]


def job_name(uid: str) -> str:
    """The Slurm job name of a pod: how Mobius finds the job again after any restart."""
    return f"mobius-{uid}"


def sandbox_name(uid: str) -> str:
    return f"mobius-{uid}"


def _container_run(
    c: Container, *, index: int, init: bool, pod: Pod, refs: PodRefs, mounts: tuple[Mount, ...]
) -> ContainerRun:
    kind = "initContainers" if init else "containers"
    field = f"spec.{kind}[{index}]"
    if not _DNS_LABEL.match(c.name):
        raise InvalidPodSpec(f"{field}.name", f"{c.name!r} is not a DNS label")
    if not c.image:
        raise InvalidPodSpec(f"{field}.image", "an image is required")
    if c.image.startswith("-"):  # the runtimes would take it for an option
        raise InvalidPodSpec(f"{field}.image", f"{c.image!r} is not an image reference")
    # env, envFrom, service links, $(VAR) in command/args; the pod IP stays a run-time value.
    resolved = container_env(pod, c, field=field, refs=refs)
    who = run_as(pod, c, field=field)
    return ContainerRun(
        name=c.name,
        image=c.image,
        command=resolved.command,
        args=resolved.args,
        env=resolved.env,
        working_dir=c.working_dir,
        pull_policy=c.image_pull_policy
        or (
            "Always"
            if c.image.endswith(":latest") or ":" not in c.image.rsplit("/", 1)[-1]
            else "IfNotPresent"
        ),
        run_as_user=who.user,
        run_as_group=who.group,
        supplemental_groups=who.groups,
        mounts=mounts,
    )


DEFAULT_GRES_MAP: Mapping[str, str] = {"nvidia.com/gpu": "gpu", "amd.com/gpu": "gpu"}


def pod_gres(pod: Pod, gres_map: Mapping[str, str]) -> str:
    """``--gres`` for the pod's extended resources, e.g. ``gpu:2``; "" when it asks for none.

    As in Kubernetes, extended resources are whole numbers and requests equal limits (a limit
    alone implies the request); the pod needs max(largest init container, sum of app
    containers), like CPU and memory.
    """

    def amount(c: Container, name: str, field: str) -> int:
        raw = c.resources.limits.get(name) or c.resources.requests.get(name)
        if raw is None:
            return 0
        if not raw.isdigit():
            raise InvalidPodSpec(field, f"{name} must be a whole number, not {raw!r}")
        return int(raw)

    totals: dict[str, int] = {}
    for name, gres in gres_map.items():
        app = sum(
            amount(c, name, f"spec.containers[{i}].resources.limits[{name}]")
            for i, c in enumerate(pod.spec.containers)
        )
        init = max(
            (
                amount(c, name, f"spec.initContainers[{i}].resources.limits[{name}]")
                for i, c in enumerate(pod.spec.init_containers)
            ),
            default=0,
        )
        if need := max(app, init):
            totals[gres] = totals.get(gres, 0) + need
    return ",".join(f"{gres}:{n}" for gres, n in sorted(totals.items()))


def pod_resources(pod: Pod) -> tuple[int, int]:
    """(cpus, MiB) with Kubernetes semantics: max(largest init container, sum of app containers)."""

    def need(c: Container, i: int, kind: str) -> tuple[Decimal, Decimal]:
        r = c.resources
        cpu = r.requests.get("cpu") or r.limits.get("cpu")
        mem = r.requests.get("memory") or r.limits.get("memory")
        f = f"spec.{kind}[{i}].resources"
        return (
            parse_quantity(cpu, field=f"{f}.cpu") if cpu else Decimal(0),
            parse_quantity(mem, field=f"{f}.memory") if mem else Decimal(0),
        )

    app = [need(c, i, "containers") for i, c in enumerate(pod.spec.containers)]
    init = [need(c, i, "initContainers") for i, c in enumerate(pod.spec.init_containers)]
    cpu = max([sum((a[0] for a in app), Decimal(0)), *(i[0] for i in init)])
    mem = max([sum((a[1] for a in app), Decimal(0)), *(i[1] for i in init)])
    return (
        cpus(str(cpu), field="spec.containers[*].resources") if cpu else 1,
        megabytes(str(mem), field="spec.containers[*].resources") if mem else DEFAULT_MEMORY_MB,
    )


def _container_function(
    fn: str,
    run: ContainerRun,
    runtime: Runtime,
    *,
    sandbox: str,
    restart: str,
    log_writer: bool = True,
    watch: bool = False,
) -> list[str]:
    """A shell function that runs one container until its restart policy says stop.

    Each run's stdout and stderr go through named pipes (in a private temp folder on the node)
    to one ``cri_log`` reader per stream, which appends CRI lines to ``logs/<name>/<run>.log``
    (:mod:`mobius.pods.logformat`). The container stays the function's own child, so signals
    reach it as before; its exit is recorded only once both readers have written everything.
    ``log_writer`` prepends the definition of ``cri_log`` (harmless when repeated).
    ``watch``: start ``<fn>_watch`` (probes and hooks, :mod:`mobius.pods.probes`) beside each
    run, holding none of the log pipes, and stop it when the run ends.
    """
    name = run.name
    cmd = runtime.run_container(sandbox=sandbox, container=run)
    # The image first, as the kubelet pulls it before it creates the container (mobius.pods.images).
    pull = runtime.pull_command(container=run)
    return [
        *(SHELL_LOG_WRITER.splitlines() if log_writer else []),
        f"{fn}() {{",
        f'  local rc restarts=0 delay={BACKOFF_START} logs="$POD_DIR/logs/"{quote(name)} pipes= out= err= end= wend= keep= sync='
        + (" watch=" if watch else ""),
        '  mkdir -p "$logs"',
        *([f"  pull_image {quote(name)} {pull} || return 1"] if pull else []),
        "  while :; do",
        *(
            [f'    rm -f "$CTL/c/{name}.pid" "$CTL/c/{name}.ready" "$CTL/c/{name}.startup"']
            if watch
            else []
        ),
        f'    put c/{name}.started "$(now)"',
        *([f"    {fn}_watch </dev/null >/dev/null 2>&1 & watch=$!"] if watch else []),
        '    if pipes=$(mktemp -d "${TMPDIR:-/tmp}/mobius-log.XXXXXX") && mkfifo "$pipes/1" "$pipes/2" "$pipes/end"; then',
        "      # Only the readers hold the write end of end: reading it returns once both are done.",
        '      exec {wend}<>"$pipes/end" {end}<"$pipes/end"',
        '      cri_log stdout "$logs/$restarts.log" <"$pipes/1" {end}<&- & out=$!',
        '      cri_log stderr "$logs/$restarts.log" <"$pipes/2" {end}<&- & err=$!',
        f'      rm -f "$CTL/c/{name}.pid"; put c/{name}.shell "$BASHPID $out $err{" $watch" if watch else ""}"',
        "      # The function holds its stderr pipe open too: when the runtime is a brace group,",
        "      # bash reports a killed child on that pipe, and must not die of SIGPIPE doing so.",
        "      # Opening the stderr FIFO write-only waits until its reader has opened it; only then",
        "      # may the function hold it read-write, or early output could outlive every reader.",
        '      exec {wend}>&- {sync}>"$pipes/2"',
        '      exec {keep}<>"$pipes/2" {sync}>&-',
        f'      {cmd} >"$pipes/1" 2>"$pipes/2" </dev/null {{end}}<&-',
        "      rc=$?",
        "      exec {keep}>&-",
        "      # The readers drain what is left; leftover processes of the container that still",
        "      # hold the pipes get 10 s more (a short wait could cut off a reader slowed by load).",
        '      read -r -t 10 -u "$end" _',
        '      [ $? -gt 128 ] && kill -KILL "$out" "$err" 2>/dev/null',
        '      wait "$out" "$err"',
        "      exec {end}<&-",
        "    else",
        f'      echo "mobius: cannot create the log pipes of container {name}" >&2',
        "      rc=125",
        "    fi",
        '    [ -n "$pipes" ] && rm -rf "$pipes"',
        *(['    kill "$watch" 2>/dev/null; wait "$watch"'] if watch else []),
        f'    put c/{name}.exit "$rc $(now)"',
        '    [ -e "$CTL/stopping" ] && return "$rc"',
        *(
            ['    return "$rc"']
            if restart == "Never"
            else ['    [ "$rc" -eq 0 ] && return 0']
            if restart == "OnFailure"
            else []
        ),
        "    restarts=$((restarts + 1))",
        f'    put c/{name}.last "$rc $(now)"',
        f'    put c/{name}.restarts "$restarts"',
        '    sleep "$delay" & wait $!',
        '    [ -e "$CTL/stopping" ] && return "$rc"',
        f"    delay=$((delay * 2 > {BACKOFF_MAX} ? {BACKOFF_MAX} : delay * 2))",
        "  done",
        "}",
    ]


def render_job(
    pod: Pod,
    *,
    pod_dir: str,
    runtime: Runtime,
    partition: str | None = None,
    refs: PodRefs | None = None,
    volumes: VolumePlan | None = None,
    gres_map: Mapping[str, str] = DEFAULT_GRES_MAP,
    stats_interval: int = DEFAULT_STATS_INTERVAL,
    resolv_conf: bool = False,
) -> JobSpec:
    """The batch script and sbatch options that run ``pod``; InvalidPodSpec if it cannot run.

    ``gres_map``: extended resources that become Slurm GRES (``nvidia.com/gpu`` -> ``gpu``).
    ``stats_interval``: seconds between the job's usage samples (0: none).
    ``resolv_conf``: the caller wrote the pod's ``resolv.conf`` (:mod:`mobius.pods.dns`) into
    ``pod_dir``; every container gets it as /etc/resolv.conf.

    ``refs``: the ConfigMaps, Secrets, Services and node facts the pod's environment refers to
    (see :func:`mobius.pods.env.needs`); without them every such reference is missing.
    """
    meta, spec = pod.metadata, pod.spec
    refs = PodRefs() if refs is None else refs
    # ``volumes``: the plan the caller materialises (:mod:`mobius.pods.volumes`), else made here.
    volumes = plan_volumes(pod, refs=refs, pod_dir=pod_dir) if volumes is None else volumes
    dns = (
        (
            Mount(
                f"{pod_dir}/resolv.conf", "/etc/resolv.conf", read_only=True, field="spec.dnsConfig"
            ),
        )
        if resolv_conf
        else ()
    )
    if not spec.containers:
        raise InvalidPodSpec("spec.containers", "a pod needs at least one container")
    if spec.restart_policy not in ("Always", "OnFailure", "Never"):
        raise InvalidPodSpec(
            "spec.restartPolicy", f"{spec.restart_policy!r} is not Always, OnFailure or Never"
        )
    inits = [
        _container_run(
            c, index=i, init=True, pod=pod, refs=refs, mounts=volumes.mounts.get(c.name, ()) + dns
        )
        for i, c in enumerate(spec.init_containers)
    ]
    apps = [
        _container_run(
            c, index=i, init=False, pod=pod, refs=refs, mounts=volumes.mounts.get(c.name, ()) + dns
        )
        for i, c in enumerate(spec.containers)
    ]
    names = [r.name for r in (*inits, *apps)]
    if len(set(names)) != len(names):
        raise InvalidPodSpec("spec.containers", "container names must be unique within the pod")
    if launcher := mpi_launcher(meta.annotations):
        launched = mpi_containers(meta.annotations, [r.name for r in apps])
        apps = [
            msgspec.structs.replace(r, launcher=launcher) if r.name in launched else r for r in apps
        ]
        for i, r in enumerate(apps):
            if r.launcher and runtime.name == "podman" and not r.command:
                raise InvalidPodSpec(
                    f"spec.containers[{i}].command",
                    "with Podman the MPI launcher runs inside the container, before its "
                    "command: set the command (the image's entrypoint cannot be known here)",
                )
    grace = spec.termination_grace_period_seconds
    grace = 30 if grace is None else max(0, grace)
    sandbox = sandbox_name(meta.uid)
    hostname = (spec.hostname or meta.name)[:63]
    init_restart = "Never" if spec.restart_policy == "Never" else "OnFailure"
    # preStop hooks run on TERM before the containers are stopped, within the grace period.
    pre_stop = probes.pre_stop_call([(f"app_{i}", c) for i, c in enumerate(spec.containers)])

    lines = [
        "#!/bin/bash",
        f"# Mobius job for pod {meta.namespace}/{meta.name} (uid {meta.uid}).",
        "# Generated from the pod spec; edits are overwritten.",
        "set -u",
        f"POD_DIR={quote(pod_dir)}",
        'CTL="$POD_DIR/ctl"',
        'mkdir -p "$CTL/c" "$POD_DIR/logs"',
        "now() { date -u +%Y-%m-%dT%H:%M:%SZ; }",
        "# put FILE VALUE: write a control file atomically (readers never see half a value).",
        'put() { printf \'%s\\n\' "$2" >"$CTL/$1.tmp" && mv -f "$CTL/$1.tmp" "$CTL/$1"; }',
        'put node "$(hostname)"',
        *runtime.preamble(),
        f"SANDBOX={quote(sandbox)}",
        "SAMPLER=",
        "cleanup() {",
        '  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null',
        f"  {runtime.remove_sandbox(sandbox=sandbox)}",
        "}",
        "# TERM comes from the kubelet (pod deleted: it leaves the grace period in ctl/grace first)",
        "# or from Slurm (--signal before the time limit, preemption, scancel --signal).",
        f"GRACE={grace}",
        "STOPPED_BY=",
        "on_term() {",
        '  [ -n "$STOPPED_BY" ] && return',
        "  STOPPED_BY=slurm",
        '  if [ -e "$CTL/grace" ]; then STOPPED_BY=kubelet; read -r GRACE <"$CTL/grace"; fi',
        '  put stopping "$(now) $STOPPED_BY"',
        *(["  " + pre_stop] if pre_stop else []),
        "  "
        + runtime.stop_sandbox(sandbox=sandbox, grace='"$STOP_IN"' if pre_stop else '"$GRACE"'),
        "}",
        "# seconds FORMAT: Slurm's [days-]hours:minutes:seconds (as squeue %L prints) in seconds.",
        "seconds() {",
        "  local d=0 t=$1 h=0 m=0 s=0",
        "  case $t in *-*) d=${t%%-*}; t=${t#*-} ;; esac",
        '  IFS=: read -r a b c <<<"$t"',
        '  if [ -n "$c" ]; then h=$a m=$b s=$c; elif [ -n "$b" ]; then m=$a s=$b; else s=$a; fi',
        '  case "$d$h$m$s" in *[!0-9]*|"") return 1 ;; esac',
        "  echo $((10#$d * 86400 + 10#$h * 3600 + 10#$m * 60 + 10#$s))",
        "}",
        "trap cleanup EXIT",
        "trap on_term TERM INT",
        *node_setup(volumes),
        *runtime.create_sandbox(sandbox=sandbox, hostname=hostname, host_network=spec.host_network),
        'put pod.ip "$POD_IP"',
        'put pod.started "$(now)"',
        *(
            [
                *SHELL_USAGE_SAMPLER.strip().splitlines(),
                f"usage_sampler {int(stats_interval)} {' '.join(quote(r.name) for r in (*inits, *apps))} </dev/null >/dev/null 2>&1 &",
                "SAMPLER=$!",
            ]
            if stats_interval > 0
            else []
        ),
        "",
        *SHELL_LOG_WRITER.splitlines(),
        *SHELL_PULL.splitlines(),
        "",
    ]
    for i, run in enumerate(inits):
        lines += _container_function(
            f"init_{i}", run, runtime, sandbox=sandbox, restart=init_restart, log_writer=False
        )
    if any(probes.watched(c) for c in spec.containers):
        lines += probes.library(runtime, host_network=spec.host_network)
    for i, run in enumerate(apps):
        lines += probes.container_functions(
            f"app_{i}",
            spec.containers[i],
            run,
            runtime,
            sandbox=sandbox,
            grace=grace,
            field=f"spec.containers[{i}]",
        )
        lines += _container_function(
            f"app_{i}",
            run,
            runtime,
            sandbox=sandbox,
            restart=spec.restart_policy,
            log_writer=False,
            watch=probes.watched(spec.containers[i]),
        )
    lines.append("")
    for i, run in enumerate(inits):
        lines += [
            f"init_{i} & wait $!",
            "rc=$?",
            f'[ "$rc" -ne 0 ] && {{ echo "mobius: init container {run.name} exited $rc" >&2; exit "$rc"; }}',
        ]
    lines.append("pids=()")
    lines += [f"app_{i} & pids+=($!)" for i in range(len(apps))]
    lines += [
        "# wait returns early when a trapped signal arrives: keep waiting until all are done.",
        'for pid in "${pids[@]}"; do',
        '  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done',
        "done",
        "rc=0",
        f"for c in {' '.join(quote(r.name) for r in apps)}; do",
        '  code=1; read -r code _ <"$CTL/c/$c.exit" 2>/dev/null',
        '  if [ "$rc" -eq 0 ] && [ "$code" -ne 0 ]; then rc=$code; fi',
        "done",
        "# Stopped by Slurm's warning signal ahead of the time limit: the containers had their grace",
        "# period; now let the limit come, so Slurm records TIMEOUT rather than a normal end.",
        'if [ "$STOPPED_BY" = slurm ] && [ -n "${SLURM_JOB_ID:-}" ]; then',
        '  left=$(seconds "$(squeue -h -j "$SLURM_JOB_ID" -o %L 2>/dev/null)") || left=',
        '  if [ -n "$left" ] && [ "$left" -le $((GRACE + 120)) ]; then',
        "    sleep $((left + 60)) & wait $!",
        "  fi",
        "fi",
        'exit "$rc"',
        "",
    ]
    cpu, mem = pod_resources(pod)
    args = [
        "--parsable",
        f"--job-name={job_name(meta.uid)}",
        f"--comment=pod {meta.namespace}/{meta.name}",
        f"--output={pod_dir}/job.out",
        f"--chdir={pod_dir}",
        "--nodes=1",
        "--no-requeue",  # as in Kubernetes, a failed pod is never rerun; controllers make new ones
        "--ntasks=1",
        f"--cpus-per-task={cpu}",
        f"--mem={mem}M",
        f"--signal=B:TERM@{max(grace, 1)}",  # before a time limit: time to stop cleanly
    ]
    if gres := pod_gres(pod, gres_map):
        args.append(f"--gres={gres}")
    if partition:
        args.append(f"--partition={partition}")
    if spec.active_deadline_seconds:
        # A backstop only: the kubelet enforces the deadline itself, counted from the pod's
        # start time as Kubernetes does. Slurm takes minutes:seconds.
        minutes, seconds = divmod(max(1, spec.active_deadline_seconds), 60)
        args.append(f"--time={minutes}:{seconds:02d}")
    # Annotations come last: for sbatch the last occurrence of an option wins.
    args += sbatch_options(meta.annotations)
    return JobSpec(script="\n".join(lines), sbatch_args=tuple(a for a in args if a))
