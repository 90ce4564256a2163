"""The interface every container runtime implements for the job script generator."""

from __future__ import annotations

import hashlib
import json
import re
from shlex import quote
from typing import Protocol

import msgspec

from mobius.errors import InvalidPodSpec

RUN_VARIABLES = frozenset({"POD_IP"})
"""Shell variables the job script sets before any container starts (``create_sandbox`` sets
``POD_IP``): the only names a :class:`RunVar` may carry."""


class RunVar(msgspec.Struct, frozen=True):
    """A value only the running job knows (the pod's IP), named by the script variable holding it.

    The name is checked against :data:`RUN_VARIABLES` on construction, so pod text can never
    choose which variable (let alone which shell code) is expanded.
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in RUN_VARIABLES:
            raise ValueError(f"{self.name!r} is not a job script variable {sorted(RUN_VARIABLES)}")


class Late(msgspec.Struct, frozen=True):
    """Text the job script completes when it runs: literal parts and :class:`RunVar` parts,
    concatenated. Build it with :func:`join_text`, which keeps plain text plain."""

    parts: tuple[str | RunVar, ...]


Text = str | Late
"""A value for a container: literal text, or text with run-time parts."""


def join_text(*pieces: Text | RunVar) -> Text:
    """The concatenation of ``pieces``: a plain ``str`` unless a run-time part is among them."""
    parts: list[str | RunVar] = []
    for piece in pieces:
        for part in piece.parts if isinstance(piece, Late) else (piece,):
            if isinstance(part, str) and parts and isinstance(parts[-1], str):
                parts[-1] += part
            elif part != "":
                parts.append(part)
    if all(isinstance(p, str) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    return Late(tuple(parts))


def shell_word(text: Text) -> str:
    """``text`` as ONE shell word: literal parts single-quoted, run-time parts as ``"$NAME"``.

    Only :data:`RUN_VARIABLES` names are ever written unquoted, so no pod text reaches the
    shell except as the literal bytes of a single-quoted string.
    """
    if isinstance(text, str):
        return quote(text)
    words = [
        f'"${{{p.name}}}"' if isinstance(p, RunVar) else quote(p) for p in text.parts if p != ""
    ]
    return "".join(words) or "''"


def json_array(items: tuple[Text, ...]) -> Text:
    """A JSON array of strings (podman's ``--entrypoint`` form) whose items may have run-time
    parts. Run-time values (IP addresses) need no JSON escaping."""
    pieces: list[Text | RunVar] = ["["]
    for i, item in enumerate(items):
        if i:
            pieces.append(", ")
        if isinstance(item, str):
            pieces.append(json.dumps(item))
            continue
        pieces.append('"')
        for part in item.parts:
            pieces.append(part if isinstance(part, RunVar) else json.dumps(part)[1:-1])
        pieces.append('"')
    pieces.append("]")
    return join_text(*pieces)


_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def reference_file_name(reference: str) -> str:
    """A file name for an image reference (a cache entry, a lock): readable, one path
    component, unique per reference.

    The readable part keeps ``[A-Za-z0-9_.-]`` only (no ``/``, never ``.`` or ``..``); a hash of
    the whole reference tells apart references that read the same once made safe, or differ
    only in tag, digest or registry.
    """
    readable = _UNSAFE_IN_NAME.sub("_", reference.split("://", 1)[-1]).strip("._-")
    digest = hashlib.sha256(reference.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{readable[:80] or 'image'}-{digest}"


class Mount(msgspec.Struct, frozen=True):
    """A path of the node bound into a container (a volume, or a subPath inside one).

    ``field`` names the volumeMount in the pod spec, for the error when a runtime cannot carry
    the paths in its flag syntax.
    """

    source: str  # absolute, on the node
    target: str  # absolute, in the container
    read_only: bool = False
    field: str = ""


def bind_spec(mount: Mount, *, flag: str, forbidden: str) -> str:
    """``source:target[:ro]``, the value of podman's ``--volume`` or Apptainer's ``--bind``.

    A path holding a character of ``forbidden`` (``:`` separates the parts; Apptainer's flag is
    also a ``,``-separated list) cannot be said in that syntax: InvalidPodSpec naming the mount.
    """
    for what, path in (("volume path", mount.source), ("mountPath", mount.target)):
        bad = sorted({ch for ch in path if ch in forbidden})
        if bad:
            raise InvalidPodSpec(
                mount.field or "volumeMounts",
                f"{what} {path!r} contains {' and '.join(repr(ch) for ch in bad)}, "
                f"which {flag} cannot carry",
            )
    return f"{mount.source}:{mount.target}" + (":ro" if mount.read_only else "")


class ContainerRun(msgspec.Struct, frozen=True):
    """One container to run, already resolved from the pod spec (no shell quoting yet).

    ``command``, ``args`` and env values are :data:`Text`: runtimes render each with
    :func:`shell_word`. ``run_as_user``/``run_as_group``/``supplemental_groups`` come from the
    effective securityContext; a runtime that cannot switch users ignores them (the submitter
    has warned the user). ``mounts`` are in mount order (parents before what they contain).
    """

    name: str
    image: str
    command: tuple[Text, ...]  # entrypoint override; empty = image default
    args: tuple[Text, ...]
    env: tuple[tuple[str, Text], ...]
    working_dir: str | None = None
    pull_policy: str = "IfNotPresent"
    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    mounts: tuple[Mount, ...] = ()
    launcher: tuple[str, ...] = ()  # an MPI launcher (srun/mpiexec and its flags), or ()


class Runtime(Protocol):
    """Shell fragments for one pod. ``sandbox`` is the quoted sandbox name variable's value."""

    name: str

    def preamble(self) -> list[str]:
        """Lines run once at the top of the script (the runtime's binary, shared flags)."""
        ...

    def create_sandbox(self, *, sandbox: str, hostname: str, host_network: bool) -> list[str]:
        """Lines that create the pod sandbox and set ``POD_IP``; they ``exit 125`` on failure."""
        ...

    def run_container(self, *, sandbox: str, container: ContainerRun) -> str:
        """One shell command that runs the container in the foreground, returning its exit code.
        InvalidPodSpec when the container's mounts cannot be expressed in the runtime's flags."""
        ...

    def pull_command(self, *, container: ContainerRun) -> str:
        """The image step the job runs before the container first starts (the script's
        ``pull_image`` wraps it: see :data:`mobius.pods.images.SHELL_PULL` for what it must
        print and return), honouring ``pull_policy``; "" when there is nothing to get."""
        ...

    def stop_sandbox(self, *, sandbox: str, grace: str) -> str:
        """A command that stops every container of the sandbox within ``grace`` seconds, a shell
        word the script expands at run time (e.g. ``"$GRACE"``)."""
        ...

    def remove_sandbox(self, *, sandbox: str) -> str:
        """A command that removes the sandbox and what is left of its containers."""
        ...

    def reap_command(self, *, sandbox: str) -> list[str]:
        """argv the kubelet runs on the job's host, after the job ended, to remove what may be
        left of the sandbox (processes that escaped the job); [] when nothing can be left."""
        ...

    # Probes and lifecycle hooks (mobius.pods.probes). While a container runs, its runtime has
    # written the PID of its process to ``$CTL/c/<name>.pid``.

    def exec_command(
        self, *, sandbox: str, container: ContainerRun, command: tuple[str, ...]
    ) -> str:
        """Shell words that run ``command`` in the running container, with its environment (an
        exec probe or hook); its exit status is the command's."""
        ...

    def stop_container(self, *, sandbox: str, container: ContainerRun, grace: str) -> str:
        """A command that stops this one container within ``grace`` seconds (a shell word), as
        after a failed liveness probe; the container's function then applies restartPolicy."""
        ...

    def probe_network(self, *, host_network: bool) -> list[str]:
        """Lines that set the array ``NETNS``: the words in front of a command that must reach the
        pod's IP from the job (an httpGet or tcpSocket probe), empty when the node reaches it."""
        ...
