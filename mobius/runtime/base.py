"""The interface every container runtime implements for the job script generator."""

from __future__ import annotations

from typing import Protocol

import msgspec


class ContainerRun(msgspec.Struct, frozen=True):
    """One container to run, already resolved from the pod spec (no shell quoting yet)."""

    name: str
    image: str
    command: tuple[str, ...]  # entrypoint override; empty = image default
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    working_dir: str | None = None
    pull_policy: str = "IfNotPresent"


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
        """One shell command that runs the container in the foreground, returning its exit code."""
        ...

    def stop_sandbox(self, *, sandbox: str, grace: str) -> str:
        """A command that stops every container of the sandbox within ``grace`` seconds, a shell
        word the script expands at run time (e.g. ``"$GRACE"``)."""
        ...

    def remove_sandbox(self, *, sandbox: str) -> str:
        """A command that removes the sandbox and what is left of its containers."""
        ...
