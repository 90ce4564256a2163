"""Apptainer (and Singularity, the same CLI family): the usual container runtime on HPC clusters,
where it runs unprivileged and needs no daemon. Each Kubernetes container is one ``apptainer
exec`` (``command`` set: command + args) or ``apptainer run`` (args go to the image's runscript),
in the foreground of the job script, so the script sees each exit code.

Choices, and why:

* Network and hostname. Apptainer has no pods and, without root, no network namespaces of its
  own: every container shares the node's network, so containers of one pod reach each other on
  localhost as Kubernetes promises. ``POD_IP`` is the node's first address (``hostname -I``);
  two pods on one node share its ports, as ``hostNetwork`` pods do. Unless the pod asks for the
  host network, containers get the pod's hostname with ``--uts --hostname`` (a UTS namespace
  needs user namespaces or a setuid installation; ``uts=False`` keeps the node's hostname).
* Environment. ``--cleanenv`` keeps the job's environment out, ``--no-eval`` keeps Apptainer's
  shell from evaluating env values and the runscript's args (Kubernetes passes them verbatim).
  Values travel as ``APPTAINERENV_<name>`` variables set by ``env``, not ``--env K=V``: that
  flag is parsed as CSV and mangles values holding ``"``, or ``,`` next to a second ``=``.
  Inherited ``*ENV_`` variables are unset first, so only the pod's values arrive.
* Filesystem. ``--writable-tmpfs`` gives the writable root Kubernetes containers have (changes
  vanish with the container), ``--no-home`` keeps the user's home and its dotfiles (say a
  ``~/.local`` Python path) from changing what the image does. ``/tmp`` and the site's bind
  paths stay shared. Without ``workingDir`` Apptainer picks the directory (the job directory if
  it is bound, else the container's home); ``--pwd`` sets it.
* Images. ``docker://`` (and other ``scheme://``) references are converted to SIF once per
  node into ``image_cache``; a name without a scheme gets ``docker://`` and thus Docker Hub's
  ``library/`` rules, as in Kubernetes. The file name is the reference made safe plus a hash of
  the whole reference (:func:`sif_name`): references that differ only in tag, digest or registry
  never share a file, and no reference can name a path outside the cache. An ``flock`` per image
  makes pods on one node build it once: a build that finished while a pod waited for the lock is
  used as is (a failed one answers for the waiting pods too). ``Never`` uses the SIF only if it
  is there, ``IfNotPresent`` builds it when missing, ``Always`` rebuilds but keeps the stored SIF
  when the registry cannot be reached. The build is the image step of the script's
  ``pull_image`` (:meth:`pull_command`, :mod:`mobius.pods.images`), which reports it to the
  kubelet and retries a failure with back-off; registry logins from ``imagePullSecrets`` reach
  it as ``APPTAINER_DOCKER_USERNAME``/``PASSWORD``. New SIFs replace old ones by rename, so
  running containers keep the file they opened. Local SIF files (``/path`` or ``*.sif``) are
  used as they are.
* Stopping. Apptainer's processes are children of the job script's container functions, and
  Apptainer forwards SIGTERM to the container. ``stop_containers`` sends TERM once to each process
  those functions run, KILL to whatever is left after the grace period, until every function has
  returned (each records its container's exit code). There is nothing to remove afterwards
  except half-built SIFs of this job.
* Probes and hooks. The container's process writes its PID to ``ctl/c/<name>.pid`` as it starts
  (``with_pid``, once the image is ready); one container is stopped through it (``stop_pid``).
  Without instances there is no process to enter: an exec probe or hook runs ``apptainer exec``
  of the same image with the same environment, binds and working directory, beside the
  container on the same network, so it sees what the container shares (files on binds, ports)
  and nothing private to it (its writable-tmpfs, its processes).

Needs ``--no-eval``: Apptainer 1.1 or later, SingularityCE 3.10 or later.
"""

from __future__ import annotations

import re
from shlex import quote

from mobius.runtime.base import (
    ContainerRun,
    bind_spec,
    join_text,
    reference_file_name,
    shell_word,
)

__all__ = ["Apptainer", "Singularity", "image_source", "is_local_image", "shell_path", "sif_name"]

DEFAULT_IMAGE_CACHE = "$HOME/.mobius/images"
_POLICIES = ("Always", "IfNotPresent", "Never")
_SHELL_VARIABLE = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")

_IMAGE_READY = r"""# image_ready SOURCE FILE POLICY CONTAINER: "$IMAGE_CACHE/FILE" a SIF of SOURCE per
# imagePullPolicy (the image step of pull_image, mobius.pods.images). One build per image and
# node at a time, under flock: a build that succeeded while we waited is used, one that failed
# answers for us too (FILE.last). The container's registry login, when the kubelet wrote one
# (pull-auth/CONTAINER: username NUL password NUL), goes to the build as <RUNTIME>_DOCKER_*.
image_ready() {
  local src=$1 sif="$IMAGE_CACHE/$2" policy=$3 login="$POD_DIR/pull-auth/$4" asked
  if [ -f "$sif" ]; then
    [ "$policy" = Always ] || { echo present; return 0; }
  elif [ "$policy" = Never ]; then
    echo "mobius: image $src is not in $IMAGE_CACHE and imagePullPolicy is Never" >&2
    return 2
  fi
  printf -v asked '%(%s)T' -1
  (
    flock 9 || exit 1
    fresh= why= user= pass= t0= tmp="$sif.$$.tmp"
    if [ -f "$sif.last" ] && [ "$(stat -c %Y "$sif.last")" -ge "$asked" ]; then
      read -r fresh why <"$sif.last"
    fi
    if [ -f "$sif" ] && { [ "$policy" = IfNotPresent ] || [ "$fresh" = ok ]; }; then
      echo present
      exit 0
    fi
    if [ "$fresh" = failed ]; then
      echo "$why" >&2
    else
      local -a with=()
      if [ -f "$login" ] && { IFS= read -r -d '' user && IFS= read -r -d '' pass; } <"$login"; then
        with=("${LOGIN_ENV}_DOCKER_USERNAME=$user" "${LOGIN_ENV}_DOCKER_PASSWORD=$pass")
      fi
      rm -f "$tmp"
      pulling
      t0=${EPOCHREALTIME/./}
      if env "${with[@]}" "${APPTAINER[@]}" build "$tmp" "$src" </dev/null >&2 2>"$tmp.err" && mv -f "$tmp" "$sif"; then
        echo ok >"$sif.last"
        rm -f "$tmp.err"
        echo "pulled $((${EPOCHREALTIME/./} - t0))"
        exit 0
      fi
      rm -f "$tmp"
      why=$(grep -v '^[[:space:]]*$' "$tmp.err" | tail -n 1)
      cat "$tmp.err" >&2
      rm -f "$tmp.err"
      printf 'failed %s\n' "${why:-$src could not be built}" >"$sif.last"
    fi
    [ -f "$sif" ] && [ "$policy" = Always ] && { echo kept; exit 0; }
    exit 1
  ) 9>"$sif.lock"
}"""

_STOP_CONTAINERS = r"""# stop_containers GRACE: TERM each process the container functions run (apptainer passes it to
# the container), KILL what is left after GRACE seconds, until every function has returned.
stop_containers() {
  local grace=$1 deadline fns pid termed=" "
  case $grace in ''|*[!0-9]*) grace=30 ;; esac
  deadline=$((SECONDS + grace))
  # (exec: with traps set, bash keeps the substitution's subshell, a child of $$ pgrep would see)
  while fns=$(exec pgrep -d, -P $$) && [ -n "$fns" ]; do
    for pid in $(pgrep -P "$fns"); do
      if [ "$SECONDS" -ge "$deadline" ]; then
        kill -KILL "$pid"
      elif [[ $termed != *" $pid "* ]]; then
        kill -TERM "$pid"
        termed+="$pid "
      fi
    done 2>/dev/null
    if [ "$SECONDS" -ge $((deadline + 5)) ]; then
      pkill -KILL -P "$fns"
      return
    fi
    sleep 0.2
  done
}"""


_PID_HELPERS = r"""# with_pid FILE COMMAND...: run COMMAND as a child process whose PID goes to ctl/FILE first (the
# container's process: probes, hooks and the usage sampler find it there).
with_pid() { ( put "$1" "$BASHPID" && exec "${@:2}" ); }
# stop_pid FILE GRACE: TERM the process whose PID is in ctl/FILE, KILL it after GRACE seconds.
stop_pid() {
  local pid= end=$((SECONDS + $2))
  read -r pid <"$CTL/$1" 2>/dev/null && [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while [ -d "/proc/$pid" ]; do
    if [ "$SECONDS" -ge "$end" ]; then kill -KILL "$pid" 2>/dev/null; return 0; fi
    sleep 0.2
  done
}"""


def image_source(image: str) -> str:
    """What ``apptainer build`` converts: the image with ``docker://`` unless it names a scheme."""
    return image if "://" in image else f"docker://{image}"


def is_local_image(image: str) -> bool:
    """A SIF file on the node (absolute path or ``*.sif``), run without conversion."""
    return "://" not in image and (image.startswith("/") or image.endswith(".sif"))


def sif_name(source: str) -> str:
    """The cache file of an image reference: readable, one path component, unique per reference.

    The readable part keeps ``[A-Za-z0-9_.-]`` only (no ``/``, never ``.`` or ``..``); the hash of
    the whole reference tells apart references that read the same once made safe.
    """
    return reference_file_name(source) + ".sif"


def shell_path(path: str) -> str:
    """``path`` as one shell word in which only ``$NAME``/``${NAME}`` (and a leading ``~``) expand.

    Operators write ``$HOME/...`` or ``$SCRATCH/...``; nothing else in the path reaches the shell.
    """
    if path == "~" or path.startswith("~/"):
        path = "$HOME" + path[1:]
    words: list[str] = []
    end = 0
    for m in _SHELL_VARIABLE.finditer(path):
        if m.start() > end:
            words.append(quote(path[end : m.start()]))
        words.append(f'"${{{m.group(1) or m.group(2)}}}"')
        end = m.end()
    if end < len(path) or not words:
        words.append(quote(path[end:]))
    return "".join(words)


class Apptainer:
    """Shell fragments that run a pod's containers with ``apptainer`` (see the module notes)."""

    name = "apptainer"
    env_prefix = "APPTAINERENV_"

    def __init__(
        self,
        *,
        binary: str | None = None,
        global_flags: tuple[str, ...] = (),
        run_flags: tuple[str, ...] = (),
        image_cache: str = DEFAULT_IMAGE_CACHE,
        fakeroot: bool = False,
        uts: bool = True,
    ) -> None:
        self.binary = binary or self.name
        self.global_flags = global_flags  # before the subcommand: --quiet, --debug, ...
        self.run_flags = run_flags  # for exec/run, after Mobius' own: --nv, --bind=..., ...
        self.image_cache = image_cache
        self.fakeroot = fakeroot
        self.uts = uts

    def __repr__(self) -> str:
        options = [
            *self.global_flags,
            *self.run_flags,
            *(["--fakeroot"] if self.fakeroot else []),
            *([] if self.uts else ["uts=False"]),
            f"image_cache={self.image_cache}",
        ]
        return f"<{type(self).__name__} {self.binary} {' '.join(options)}>"

    def preamble(self) -> list[str]:
        argv = " ".join(quote(a) for a in (self.binary, *self.global_flags))
        flags = ["--cleanenv", "--no-eval", "--no-home", "--writable-tmpfs"]
        if self.fakeroot:
            flags.append("--fakeroot")
        flags += self.run_flags
        return [
            f"APPTAINER=({argv})",
            f"RUN_FLAGS=({' '.join(quote(f) for f in flags)})",
            f"IMAGE_CACHE={shell_path(self.image_cache)}",
            f"LOGIN_ENV={self.name.upper()}",
            "# Containers get the pod's environment only.",
            'for v in $(compgen -e); do case $v in APPTAINERENV_*|SINGULARITYENV_*) unset "$v" ;; esac; done',
            *_IMAGE_READY.splitlines(),
            *_STOP_CONTAINERS.splitlines(),
            *_PID_HELPERS.splitlines(),
        ]

    def create_sandbox(self, *, sandbox: str, hostname: str, host_network: bool) -> list[str]:
        lines = [
            'if ! command -v "${APPTAINER[0]}" >/dev/null; then',
            f'  echo "mobius: {self.binary} is not on PATH ($PATH)" >&2',
            "  exit 125",
            "fi",
            'if ! mkdir -p "$IMAGE_CACHE"; then',
            '  echo "mobius: cannot create the image cache $IMAGE_CACHE" >&2',
            "  exit 125",
            "fi",
            "# Containers share the node's network: the pod's IP is the node's.",
            "POD_IP=$(hostname -I 2>/dev/null | awk '{print $1}')",
            "[ -n \"$POD_IP\" ] || POD_IP=$(hostname -i 2>/dev/null | awk '{print $1}')",
        ]
        if self.uts and not host_network:
            lines.append(f"RUN_FLAGS+=(--uts --hostname {quote(hostname)})")
        return lines

    def pull_command(self, *, container: ContainerRun) -> str:
        image = container.image
        if is_local_image(image):
            return ""
        source, name = image_source(image), sif_name(image_source(image))
        policy = container.pull_policy if container.pull_policy in _POLICIES else "IfNotPresent"
        return f"image_ready {quote(source)} {quote(name)} {policy} {quote(container.name)}"

    def run_container(self, *, sandbox: str, container: ContainerRun) -> str:
        # An MPI launcher starts the runtime once per rank (the hybrid model): the job's
        # environment, with the container's variables, reaches every rank.
        words = self._words(
            container,
            launcher=container.launcher,
            subcommand="exec" if container.command else "run",
            argv=tuple(shell_word(a) for a in (*container.command, *container.args)),
        )
        pid = quote(f"c/{container.name}.pid")
        return f"{{ with_pid {pid} {words}; }}"

    def _words(
        self,
        container: ContainerRun,
        *,
        launcher: tuple[str, ...],
        subcommand: str,
        argv: tuple[str, ...],
    ) -> str:
        """``env <the container's variables> [launcher] apptainer <subcommand> <flags> SIF argv``
        (``argv``: shell words)."""
        image = container.image
        if is_local_image(image):
            sif = quote(image)
        else:
            sif = f'"$IMAGE_CACHE"/{quote(sif_name(image_source(image)))}'
        parts = ["env"]
        # runAsUser/runAsGroup/supplementalGroups cannot be honoured: Apptainer runs as the job's
        # user (the submitter has said so in a Warning event).
        parts += [shell_word(join_text(f"{self.env_prefix}{k}=", v)) for k, v in container.env]
        parts += [quote(w) for w in launcher]
        parts += ['"${APPTAINER[@]}"', subcommand, '"${RUN_FLAGS[@]}"']
        parts += [
            f"--bind {quote(bind_spec(m, flag=f'{self.name} --bind', forbidden=':,'))}"
            for m in container.mounts
        ]
        if container.working_dir:
            parts.append(f"--pwd {quote(container.working_dir)}")
        parts.append(sif)
        parts += argv
        return " ".join(parts)

    def stop_sandbox(self, *, sandbox: str, grace: str) -> str:
        return f"stop_containers {grace}"

    def remove_sandbox(self, *, sandbox: str) -> str:
        return 'rm -f "$IMAGE_CACHE"/*."$$".tmp'

    def reap_command(self, *, sandbox: str) -> list[str]:
        return []  # containers are the job's own processes: Slurm ends them with the job

    def exec_command(
        self, *, sandbox: str, container: ContainerRun, command: tuple[str, ...]
    ) -> str:
        # No instance to enter: a second container of the same image, environment, binds and
        # working directory, on the same (host) network, runs the command beside the first.
        return self._words(
            container, launcher=(), subcommand="exec", argv=tuple(quote(w) for w in command)
        )

    def stop_container(self, *, sandbox: str, container: ContainerRun, grace: str) -> str:
        return f"stop_pid {quote(f'c/{container.name}.pid')} {grace}"

    def probe_network(self, *, host_network: bool) -> list[str]:
        return ["NETNS=()"]  # containers use the node's network


class Singularity(Apptainer):
    """SingularityCE and legacy Singularity: the same flags, another binary and env prefix."""

    name = "singularity"
    env_prefix = "SINGULARITYENV_"
