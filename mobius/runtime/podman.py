"""Podman: a pod sandbox (shared network namespace and hostname) with one container per
Kubernetes container, run in the foreground so the job script sees each exit code.

The script defines ``PODMAN`` (the binary and its global flags) once; every command goes
through it. ulimits are passed explicitly and taken from the job's own limits, because podman's
defaults can exceed what an unprivileged Slurm job may set.

Images are made ready before ``podman run --pull=never`` by ``podman_image`` (the runtime's
step for the script's ``pull_image``, :mod:`mobius.pods.images`), per ``imagePullPolicy``:

* ``IfNotPresent``: nothing to do when ``podman image exists``; else a pull.
* ``Always``: a pull; when it fails but the store holds the image, that image is used (HPC
  compute nodes often cannot reach registries), as ``--pull=newer`` would.
* ``Never``: the image must be in the store.

One pull per image at a time for the user on the node: the pull runs under ``flock`` on a lock
file named by the full reference (:func:`~mobius.runtime.base.reference_file_name`) in a
per-user folder (``pull_locks``, ``$HOME/.mobius/pulls`` by default), and its outcome is left
beside the lock; a pod that waited for the lock while another pulled takes that outcome instead
of pulling again, so a burst of pods on one uncached image costs one pull. Credentials from
``imagePullSecrets`` come from ``auth.json`` in the pod folder (``--authfile``) when the
kubelet wrote one.
"""

from __future__ import annotations

from shlex import quote

from mobius.errors import ConfigError
from mobius.runtime.apptainer import shell_path
from mobius.runtime.base import (
    ContainerRun,
    bind_spec,
    join_text,
    json_array,
    reference_file_name,
    shell_word,
)

DEFAULT_PULL_LOCKS = "$HOME/.mobius/pulls"
_POLICIES = ("Always", "IfNotPresent", "Never")

_PODMAN_IMAGE = r"""# podman_image IMAGE POLICY LOCK: IMAGE in podman's store per imagePullPolicy (the image step of
# pull_image). One pull per image at a time: under flock on "$PULL_LOCKS/LOCK.lock"; each pull's
# outcome goes to LOCK.last, and a pull that ended while we waited for the lock answers for us.
podman_image() {
  local image=$1 policy=$2 lock="$PULL_LOCKS/$3" asked
  local -a auth=()
  [ -f "$POD_DIR/auth.json" ] && auth=(--authfile "$POD_DIR/auth.json")
  if "${PODMAN[@]}" image exists "$image"; then
    [ "$policy" = Always ] || { echo present; return 0; }
  elif [ "$policy" = Never ]; then
    echo "image $image is not in podman's store and imagePullPolicy is Never" >&2
    return 2
  fi
  mkdir -p "$PULL_LOCKS" || return 1
  printf -v asked '%(%s)T' -1
  (
    flock 9 || exit 1
    fresh= why= t0= out=
    if [ -f "$lock.last" ] && [ "$(stat -c %Y "$lock.last")" -ge "$asked" ]; then
      read -r fresh why <"$lock.last"
    fi
    if [ "$policy" = IfNotPresent ] || [ "$fresh" = ok ]; then
      "${PODMAN[@]}" image exists "$image" && { echo present; exit 0; }
    fi
    if [ "$fresh" = failed ]; then
      echo "$why" >&2
    else
      pulling
      t0=${EPOCHREALTIME/./}
      if out=$("${PODMAN[@]}" pull --quiet "${auth[@]}" "$image" 2>&1 >/dev/null); then
        echo ok >"$lock.last"
        echo "pulled $((${EPOCHREALTIME/./} - t0))"
        exit 0
      fi
      why=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)
      printf 'failed %s\n' "${why:-podman pull failed}" >"$lock.last"
      printf '%s\n' "$out" >&2
    fi
    [ "$policy" = Always ] && "${PODMAN[@]}" image exists "$image" && { echo kept; exit 0; }
    exit 1
  ) 9>>"$lock.lock"
}"""


class Podman:
    name = "podman"

    def __init__(
        self,
        *,
        global_flags: tuple[str, ...] = (),
        binary: str = "podman",
        pull_locks: str = DEFAULT_PULL_LOCKS,
        network: str = "bridge",
    ):
        if not network or network.startswith("-") or any(c.isspace() for c in network):
            raise ConfigError(f"podman network {network!r}: give the name of a podman network")
        self.global_flags = global_flags
        self.binary = binary
        # The pods' network: podman's default bridge reaches the pods of this host; a network
        # the site configured across its nodes (flannel, a routed bridge) reaches every node's.
        self.network = network
        self.pull_locks = pull_locks  # $VARIABLES expand in the job (see shell_path)

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
            f"PULL_LOCKS={shell_path(self.pull_locks)}",
            *_PODMAN_IMAGE.splitlines(),
        ]

    def create_sandbox(self, *, sandbox: str, hostname: str, host_network: bool) -> list[str]:
        net = "host" if host_network else self.network
        s, h, infra = quote(sandbox), quote(hostname), quote(sandbox + "-infra")
        lines = [
            f'"${{PODMAN[@]}}" pod rm -f -t 0 --ignore {s} >/dev/null 2>&1',
            f'if ! "${{PODMAN[@]}}" pod create --name {s} --infra-name {infra} --hostname {h} '
            f'--network {quote(net)} >"$POD_DIR/sandbox.log" 2>&1 '
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
            "--pull=never",  # podman_image made it ready (pull_command)
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

    def pull_command(self, *, container: ContainerRun) -> str:
        policy = container.pull_policy if container.pull_policy in _POLICIES else "IfNotPresent"
        lock = reference_file_name(container.image)
        return f"podman_image {quote(container.image)} {policy} {quote(lock)}"

    def stop_sandbox(self, *, sandbox: str, grace: str) -> str:
        return f'"${{PODMAN[@]}}" pod stop -t {grace} {quote(sandbox)} >/dev/null 2>&1'

    def remove_sandbox(self, *, sandbox: str) -> str:
        return f'"${{PODMAN[@]}}" pod rm -f -t 0 --ignore {quote(sandbox)} >/dev/null 2>&1'

    def reap_command(self, *, sandbox: str) -> list[str]:
        # conmon leaves the job's process tree: a job killed outright leaves its containers.
        return [self.binary, *self.global_flags, "pod", "rm", "-f", "-t", "0", "--ignore", sandbox]

    def exec_command(
        self, *, sandbox: str, container: ContainerRun, command: tuple[str, ...]
    ) -> str:
        # podman exec runs in the container as its user, in its working directory, with its env.
        words = [quote(sandbox + "-" + container.name), *(quote(w) for w in command)]
        return '"${PODMAN[@]}" exec ' + " ".join(words)

    def stop_container(self, *, sandbox: str, container: ContainerRun, grace: str) -> str:
        name = quote(sandbox + "-" + container.name)
        return f'"${{PODMAN[@]}}" stop -t {grace} {name} >/dev/null 2>&1'

    def probe_network(self, *, host_network: bool) -> list[str]:
        if host_network:
            return ["NETNS=()"]
        # Rootful podman's bridge is the node's; rootless podman keeps pod networks in a
        # namespace of its own, which `podman unshare --rootless-netns` enters.
        return [
            "NETNS=()",
            '[ "$(id -u)" -eq 0 ] || NETNS=("${PODMAN[@]}" unshare --rootless-netns)',
        ]
