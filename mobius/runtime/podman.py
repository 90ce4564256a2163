"""Podman: a pod sandbox (shared network namespace and hostname) with one container per
Kubernetes container, run in the foreground so the job script sees each exit code.

The script defines ``PODMAN`` (the binary and its global flags) once; every command goes
through it. ulimits are passed explicitly and taken from the job's own limits, because podman's
defaults can exceed what an unprivileged Slurm job may set.
"""

from __future__ import annotations

from shlex import quote

from mobius.runtime.base import ContainerRun, bind_spec, join_text, json_array, shell_word

# "Always" maps to podman's "newer": pull when the registry has a different digest, but keep
# using the stored image when the registry cannot be reached (common on HPC compute nodes).
_PULL = {"Always": "newer", "Never": "never", "IfNotPresent": "missing"}


class Podman:
    name = "podman"

    def __init__(self, *, global_flags: tuple[str, ...] = (), binary: str = "podman"):
        self.global_flags = global_flags
        self.binary = binary

    def __repr__(self) -> str:
        return f"<Podman {self.binary} {' '.join(self.global_flags)}>"

    def preamble(self) -> list[str]:
        argv = " ".join(quote(a) for a in (self.binary, *self.global_flags))
        # podman's default rlimits exceed what a job may set, and `pod create` takes no --ulimit:
        # a containers.conf next to the pod gives the infra and app containers the job's limits.
        return [
            'export PATH="$PATH:/usr/sbin:/sbin"',
            "NPROC=$(ulimit -Hu); PID_MAX=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)",
            '{ [ "$NPROC" = unlimited ] || [ "$NPROC" -gt "$PID_MAX" ]; } && NPROC=$PID_MAX',
            'NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=1048576',
            'cat >"$POD_DIR/containers.conf" <<EOF',
            "[containers]",
            'default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]',
            "[engine]",
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            "EOF",
            'export CONTAINERS_CONF="$POD_DIR/containers.conf"',
            f"PODMAN=({argv})",
        ]

    def create_sandbox(self, *, sandbox: str, hostname: str, host_network: bool) -> list[str]:
        net = "host" if host_network else "bridge"
        s, h, infra = quote(sandbox), quote(hostname), quote(sandbox + "-infra")
        lines = [
            f'"${{PODMAN[@]}}" pod rm -f -t 0 --ignore {s} >/dev/null 2>&1',
            f'if ! "${{PODMAN[@]}}" pod create --name {s} --infra-name {infra} --hostname {h} '
            f'--network {net} >"$POD_DIR/sandbox.log" 2>&1 '
            f'|| ! "${{PODMAN[@]}}" pod start {s} >>"$POD_DIR/sandbox.log" 2>&1; then',
            '  cat "$POD_DIR/sandbox.log" >&2',
            '  echo "mobius: podman could not create the pod sandbox" >&2',
            "  exit 125",
            "fi",
        ]
        if host_network:
            lines.append("POD_IP=$(hostname -I 2>/dev/null | awk '{print $1}')")
        else:
            lines.append(
                f'POD_IP=$("${{PODMAN[@]}}" inspect --format "{{{{.NetworkSettings.IPAddress}}}}" {infra})'
            )
        return lines

    def run_container(self, *, sandbox: str, container: ContainerRun) -> str:
        parts = [
            '"${PODMAN[@]}" run --rm --log-driver=passthrough',
            f"--pod {quote(sandbox)}",
            f"--name {quote(sandbox + '-' + container.name)}",
            f"--pull={_PULL.get(container.pull_policy, 'missing')}",
            "--sig-proxy=true",
            # The container's first process, for the job's usage sampler (see mobius.pods.script).
            f'--pidfile "$CTL/c/"{quote(container.name + ".pid")}',
        ]
        parts += [f"--env {shell_word(join_text(f'{k}=', v))}" for k, v in container.env]
        if container.run_as_user is not None:
            # securityContext runAsUser[/runAsGroup]: podman takes numeric ids as they are.
            user = str(container.run_as_user)
            if container.run_as_group is not None:
                user += f":{container.run_as_group}"
            parts.append(f"--user {user}")
        parts += [f"--group-add {int(g)}" for g in container.supplemental_groups]
        parts += [
            f"--volume {quote(bind_spec(m, flag='podman --volume', forbidden=':'))}"
            for m in container.mounts
        ]
        if container.working_dir:
            parts.append(f"--workdir {quote(container.working_dir)}")
        if container.command:
            # An MPI launcher runs inside the container, with the image's MPI.
            entrypoint = (*container.launcher, *container.command)
            parts.append(f"--entrypoint {shell_word(json_array(entrypoint))}")
        parts.append(quote(container.image))
        parts += [shell_word(a) for a in container.args]
        return " ".join(parts)

    def stop_sandbox(self, *, sandbox: str, grace: str) -> str:
        return f'"${{PODMAN[@]}}" pod stop -t {grace} {quote(sandbox)} >/dev/null 2>&1'

    def remove_sandbox(self, *, sandbox: str) -> str:
        return f'"${{PODMAN[@]}}" pod rm -f -t 0 --ignore {quote(sandbox)} >/dev/null 2>&1'
