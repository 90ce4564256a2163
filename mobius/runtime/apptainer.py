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
  used as is. ``Never`` fails with exit 125 when the SIF is missing, ``IfNotPresent`` builds it
  when missing, ``Always`` rebuilds but keeps the stored SIF when the registry cannot be reached.
  New SIFs replace old ones by rename, so running containers keep the file they opened. Local
  SIF files (``/path`` or ``*.sif``) are used as they are.
* Stopping. Apptainer's processes are children of the job script's container functions, and
  Apptainer forwards SIGTERM to the container. ``stop_containers`` sends TERM once to each process
  those functions run, KILL to whatever is left after the grace period, until every function has
  returned (each records its container's exit code). There is nothing to remove afterwards
  except half-built SIFs of this job.

Needs ``--no-eval``: Apptainer 1.1 or later, SingularityCE 3.10 or later.
"""

from __future__ import annotations

import hashlib
import re
from shlex import quote

from mobius.runtime.base import ContainerRun, bind_spec, join_text, shell_word

__all__ = ["Apptainer", "Singularity", "image_source", "is_local_image", "shell_path", "sif_name"]

DEFAULT_IMAGE_CACHE = "$HOME/.mobius/images"
_POLICIES = ("Always", "IfNotPresent", "Never")
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_SHELL_VARIABLE = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")
_READABLE_LEN = 80

_IMAGE_READY = r"""# image_ready SOURCE FILE POLICY: make "$IMAGE_CACHE/FILE" a SIF of SOURCE per imagePullPolicy.
# One build per image and node at a time; a build that finished while we waited is used.
image_ready() {
  local src=$1 sif="$IMAGE_CACHE/$2" policy=$3 asked
  if [ "$policy" = Never ]; then
    [ -f "$sif" ] && return 0
    echo "mobius: image $src is not in $IMAGE_CACHE and imagePullPolicy is Never" >&2
    return 125
  fi
  asked=$(date +%s)
  (
    flock 9 || exit 125
    if [ -f "$sif" ]; then
      [ "$policy" = IfNotPresent ] && exit 0
      [ "$(stat -c %Y "$sif")" -ge "$asked" ] && exit 0
    fi
    tmp="$sif.$$.tmp"
    rm -f "$tmp"
    if "${APPTAINER[@]}" build "$tmp" "$src" </dev/null && mv -f "$tmp" "$sif"; then exit 0; fi
    rm -f "$tmp"
    if [ -f "$sif" ]; then
      echo "mobius: could not pull $src; using the stored image" >&2
      exit 0
    fi
    echo "mobius: could not pull $src" >&2
    exit 125
  ) 9>"$sif.lock"
}"""

_STOP_CONTAINERS = r"""# stop_containers GRACE: TERM each process the container functions run (apptainer passes it to
# the container), KILL what is left after GRACE seconds, until every function has returned.
stop_containers() {
  local grace=$1 deadline fns pid termed=" "
  case $grace in ''|*[!0-9]*) grace=30 ;; esac
  deadline=$((SECONDS + grace))
  while fns=$(pgrep -d, -P $$) && [ -n "$fns" ]; do
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
    readable = _UNSAFE_IN_NAME.sub("_", source.split("://", 1)[-1]).strip("._-")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{readable[:_READABLE_LEN] or 'image'}-{digest}.sif"


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
            "# Containers get the pod's environment only.",
            'for v in $(compgen -e); do case $v in APPTAINERENV_*|SINGULARITYENV_*) unset "$v" ;; esac; done',
            *_IMAGE_READY.splitlines(),
            *_STOP_CONTAINERS.splitlines(),
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

    def run_container(self, *, sandbox: str, container: ContainerRun) -> str:
        image = container.image
        if is_local_image(image):
            ready, sif = "", quote(image)
        else:
            source, name = image_source(image), sif_name(image_source(image))
            policy = container.pull_policy if container.pull_policy in _POLICIES else "IfNotPresent"
            ready = f"image_ready {quote(source)} {quote(name)} {policy} && "
            sif = f'"$IMAGE_CACHE"/{quote(name)}'
        parts = ["env"]
        # runAsUser/runAsGroup/supplementalGroups cannot be honoured: Apptainer runs as the job's
        # user (the submitter has said so in a Warning event).
        parts += [shell_word(join_text(f"{self.env_prefix}{k}=", v)) for k, v in container.env]
        # An MPI launcher starts the runtime once per rank (the hybrid model): the job's
        # environment, with the container's variables, reaches every rank.
        parts += [quote(w) for w in container.launcher]
        parts += ['"${APPTAINER[@]}"', "exec" if container.command else "run", '"${RUN_FLAGS[@]}"']
        parts += [
            f"--bind {quote(bind_spec(m, flag=f'{self.name} --bind', forbidden=':,'))}"
            for m in container.mounts
        ]
        if container.working_dir:
            parts.append(f"--pwd {quote(container.working_dir)}")
        parts.append(sif)
        parts += [shell_word(a) for a in (*container.command, *container.args)]
        return f"{{ {ready}{' '.join(parts)}; }}"

    def stop_sandbox(self, *, sandbox: str, grace: str) -> str:
        return f"stop_containers {grace}"

    def remove_sandbox(self, *, sandbox: str) -> str:
        return 'rm -f "$IMAGE_CACHE"/*."$$".tmp'


class Singularity(Apptainer):
    """SingularityCE and legacy Singularity: the same flags, another binary and env prefix."""

    name = "singularity"
    env_prefix = "SINGULARITYENV_"
