"""Container runtimes: how a job script creates a pod sandbox and runs containers in it.

Each runtime renders shell fragments for :mod:`mobius.pods.script`; none runs anything itself.
Every value that comes from a pod spec is quoted with :func:`shlex.quote` before it reaches the
shell, so no pod field can change what the script executes.
"""

from mobius.runtime.apptainer import Apptainer, Singularity
from mobius.runtime.base import ContainerRun, Runtime
from mobius.runtime.podman import Podman

__all__ = ["Apptainer", "ContainerRun", "Podman", "Runtime", "Singularity", "runtime_named"]


def runtime_named(name: str, *, flags: tuple[str, ...] = (), network: str = "bridge") -> Runtime:
    """The runtime called ``name``; ``network`` is podman's network for the pods."""
    from mobius.errors import ConfigError

    if name == "podman":
        return Podman(global_flags=flags, network=network)
    if name == "apptainer":
        return Apptainer(global_flags=flags)
    if name == "singularity":
        return Singularity(global_flags=flags)
    raise ConfigError(
        f"unknown container runtime {name!r}: use 'apptainer', 'singularity' or 'podman'"
    )
