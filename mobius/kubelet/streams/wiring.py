"""Exec, attach and port-forward on the kubelet port: routes, pod lookup, and the hooks the
kubelet server's accept loop calls.

:func:`pod_streams` builds the :data:`~mobius.kubelet.streams.listener.Route` for
``/exec|attach/{ns}/{pod}[/{uid}]/{container}`` and ``/portForward/{ns}/{pod}[/{uid}]`` upgrade
requests; the server passes every accepted TLS stream to
:func:`~mobius.kubelet.streams.listener.serve_connection` with that route and its hypercorn
handler as the fallback. :func:`stream_route` takes every backend as a parameter (the pod
lookup, what an exec or attach session runs, how to reach a pod's port), so the integration
tests run a local shell and a local TCP server through the same code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Protocol

import msgspec
import trio

from mobius.kubelet.streams import portforward, remotecommand
from mobius.kubelet.streams.attach import follow_output
from mobius.kubelet.streams.backend import Command, apptainer_exec, podman_exec, run_command
from mobius.kubelet.streams.listener import (
    PrefixedStream,
    RequestHead,
    Route,
    respond,
    serve_connection,
)
from mobius.kubelet.streams.remotecommand import ExecOptions
from mobius.kubelet.streams.session import serve_spdy
from mobius.kubelet.streams.websocket import MessageStream, WebSocketRefused, accept_websocket
from mobius.runtime import Runtime
from mobius.runtime.apptainer import image_source, is_local_image, sif_name
from mobius.state import PodPaths, PodStore

log = logging.getLogger(__name__)

__all__ = [
    "DECLARED_FEATURES",
    "PodTarget",
    "StreamRefused",
    "pod_streams",
    "serve_connection",
    "stream_route",
]

#: What the Node should list in ``status.declaredFeatures`` so that a 1.36 API server forwards
#: WebSockets instead of translating them to SPDY (both work; see the package docstring).
DECLARED_FEATURES = ("ExtendWebSocketsToKubelet",)


class StreamRefused(Exception):
    """A request we answer with an HTTP error before any upgrade."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class PodTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where a streaming request goes: a pod of ours, its job and (for exec) a container."""

    namespace: str
    name: str
    uid: str
    job_id: str = ""
    container: str = ""
    image: str = ""
    pod_dir: Path
    pod_ip: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


Resolver = Callable[[str, str, str, str | None], Awaitable[PodTarget]]
CommandFor = Callable[[PodTarget, ExecOptions], Command]
#: What a session runs: (pod, options) -> a runner of ExecIO that returns the exit code.
SessionFor = Callable[[PodTarget, ExecOptions], remotecommand.Runner]
PodDialer = Callable[[PodTarget, int], Awaitable[trio.abc.Stream]]


class Verdict(Protocol):
    """An authorization decision: status 200 lets the request in; else the HTTP answer."""

    @property
    def status(self) -> int: ...

    @property
    def message(self) -> str: ...


#: Called as ``authorize(method=, path=, cert_der=, authorization=)`` (the verified client
#: certificate or None, the Authorization header or ""), like ``mobius.kubelet.auth.authorize``
#: with its Authenticator bound.
Authorize = Callable[..., Awaitable[Verdict]]


def pod_resolver(store: PodStore, paths: PodPaths) -> Resolver:
    """Look a request's pod up in the store and its folder; StreamRefused with the reason."""

    async def resolve(ns: str, name: str, uid: str, container: str | None) -> PodTarget:
        pod = store.by_name(ns, name)
        if pod is None or (uid and uid != pod.metadata.uid):
            raise StreamRefused(404, f'pod "{name}" not found in namespace "{ns}" on this node')
        image = ""
        if container is not None:
            spec = {c.name: c for c in (*pod.spec.init_containers, *pod.spec.containers)}
            if container not in spec:
                raise StreamRefused(
                    400, f'container "{container}" is not valid for pod "{name}": {sorted(spec)}'
                )
            image = spec[container].image
        uid = pod.metadata.uid
        try:
            job_id = (await trio.Path(paths.job_id_file(uid)).read_text()).strip()
        except OSError:
            job_id = ""
        try:
            pod_ip = (await trio.Path(paths.ctl_dir(uid) / "pod.ip").read_text()).strip()
        except OSError:
            pod_ip = ""
        if not job_id:
            raise StreamRefused(400, f'pod "{name}" has no Slurm job yet: it is not running')
        return PodTarget(
            namespace=ns,
            name=name,
            uid=uid,
            job_id=job_id,
            container=container or "",
            image=image,
            pod_dir=paths.pod_dir(uid),
            pod_ip=pod_ip,
        )

    return resolve


def job_command(runtime: Runtime, slurm_env: Mapping[str, str]) -> CommandFor:
    """How to run an exec command in a pod's job for the configured runtime."""
    binary = (getattr(runtime, "binary", runtime.name), *getattr(runtime, "global_flags", ()))

    def command_for(target: PodTarget, options: ExecOptions) -> Command:
        if runtime.name == "podman":
            return podman_exec(
                uid=target.uid,
                job_id=target.job_id,
                container=target.container,
                argv=options.command,
                stdin=options.stdin,
                tty=options.tty,
                slurm_env=slurm_env,
                pod_dir=target.pod_dir,
                podman=binary,
            )
        image = target.image
        if is_local_image(image):
            sif = image
        else:
            cache = os.path.expandvars(getattr(runtime, "image_cache", "$HOME/.mobius/images"))
            sif = str(Path(cache) / sif_name(image_source(image)))
        return apptainer_exec(
            job_id=target.job_id,
            sif=sif,
            argv=options.command,
            tty=options.tty,
            slurm_env=slurm_env,
            pod_dir=target.pod_dir,
            apptainer=binary,
        )

    return command_for


def exec_session(command_for: CommandFor) -> SessionFor:
    """Sessions that run ``command_for``'s local process (srun, or anything in tests)."""

    def session(target: PodTarget, options: ExecOptions) -> remotecommand.Runner:
        return partial(run_command, command_for(target, options))

    return session


def attach_session(target: PodTarget, options: ExecOptions) -> remotecommand.Runner:
    """Attach follows the container's output; there is no stdin to attach to (the job script
    starts containers with stdin closed)."""
    if options.stdin:
        raise StreamRefused(
            400,
            "kubectl attach -i is not supported: Mobius starts containers with stdin closed; "
            "use kubectl exec -it instead",
        )
    return partial(follow_output, target.pod_dir, target.container)


async def dial_pod(target: PodTarget, port: int) -> trio.abc.Stream:
    if not target.pod_ip:
        raise OSError(f"pod {target} has no IP address yet")
    return await trio.open_tcp_stream(target.pod_ip, port)


def _split(path: str) -> tuple[str, str, str, str, str | None] | None:
    """(kind, namespace, pod, uid, container) of a streaming path, or None."""
    parts = path.strip("/").split("/")
    kind = parts[0] if parts else ""
    if kind in ("exec", "attach") and len(parts) in (4, 5):
        uid = parts[3] if len(parts) == 5 else ""
        return kind, parts[1], parts[2], uid, parts[-1]
    if kind == "portForward" and len(parts) in (3, 4):
        return kind, parts[1], parts[2], parts[3] if len(parts) == 4 else "", None
    return None


def _negotiate(head: RequestHead, offered: tuple[str, ...]) -> str:
    asked = head.tokens("x-stream-protocol-version")
    chosen = next((p for p in asked if p in offered), None)
    if chosen is None:
        raise StreamRefused(
            403,
            f"unable to upgrade: unable to negotiate protocol: client supports {asked}, "
            f"server supports {list(offered)}",
        )
    return chosen


async def _switch_to_spdy(stream: PrefixedStream, protocol: str) -> None:
    await stream.send_all(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        b"X-Stream-Protocol-Version: " + protocol.encode() + b"\r\n\r\n"
    )


def stream_route(
    *,
    resolve: Resolver,
    exec_session: SessionFor,
    attach_session: SessionFor,
    dial: PodDialer,
    authorize: Authorize | None = None,
) -> Route:
    """The handler for a streaming upgrade request, or None to let the ASGI app answer."""

    def route(head: RequestHead) -> Callable[[RequestHead, PrefixedStream], Awaitable[None]] | None:
        found = _split(head.path)
        if found is None or head.upgrade not in ("spdy/3.1", "websocket"):
            return None
        kind, ns, name, uid, container = found

        async def handle(head: RequestHead, stream: PrefixedStream) -> None:
            try:
                if authorize is not None:
                    verdict = await authorize(
                        method=head.method,
                        path=head.path,
                        cert_der=_peer_certificate(stream),
                        authorization=head.header("authorization"),
                    )
                    if verdict.status != 200:
                        raise StreamRefused(verdict.status, verdict.message)
                target = await resolve(ns, name, uid, container)
                if kind == "portForward":
                    await _port_forward(head, stream, target, dial)
                else:
                    session_for = exec_session if kind == "exec" else attach_session
                    await _remote_command(head, stream, target, session_for)
            except StreamRefused as exc:
                log.info("%s %s refused: %s", head.method, head.path, exc.message)
                await respond(stream, exc.status, exc.message + "\n")

        return handle

    return route


def _peer_certificate(stream: PrefixedStream) -> bytes | None:
    """The client certificate, which the TLS handshake verified if the peer sent one."""
    der = stream.stream.getpeercert(binary_form=True)
    return der or None


async def _remote_command(
    head: RequestHead, stream: PrefixedStream, target: PodTarget, session_for: SessionFor
) -> None:
    options = ExecOptions.from_query(head.query)
    runner = session_for(target, options)
    log.info(
        "%s %s over %s: %s (tty=%s)",
        head.path.split("/")[1],
        target,
        head.upgrade,
        options.command,
        options.tty,
    )
    if head.upgrade == "websocket":
        try:
            ws = await accept_websocket(stream, head.raw, remotecommand.WEBSOCKET_PROTOCOLS)
        except WebSocketRefused as exc:
            log.info("exec %s: %s", target, exc)
            return
        await remotecommand.serve_exec_websocket(ws, options, runner)
        return
    protocol = _negotiate(head, remotecommand.SPDY_PROTOCOLS)
    await _switch_to_spdy(stream, protocol)
    await serve_spdy(stream, partial(remotecommand.serve_exec_spdy, options=options, runner=runner))


async def _port_forward(
    head: RequestHead, stream: PrefixedStream, target: PodTarget, dial: PodDialer
) -> None:
    pod = f"{target}, uid {target.uid}"
    handler = partial(portforward.serve_port_forward, dial=partial(dial, target), pod=pod)
    if head.upgrade == "websocket":
        try:
            ws = await accept_websocket(stream, head.raw, portforward.WEBSOCKET_PROTOCOLS)
        except WebSocketRefused as exc:
            log.info("port-forward %s: %s", target, exc)
            return
        await serve_spdy(MessageStream(ws), handler)
        return
    protocol = _negotiate(head, portforward.SPDY_PROTOCOLS)
    await _switch_to_spdy(stream, protocol)
    await serve_spdy(stream, handler)


def pod_streams(
    *,
    store: PodStore,
    paths: PodPaths,
    runtime: Runtime,
    slurm_env: Mapping[str, str],
    authorize: Authorize | None = None,
) -> Route:
    """The real route: pods from the store, commands in their Slurm jobs, TCP to their IPs."""
    return stream_route(
        resolve=pod_resolver(store, paths),
        exec_session=exec_session(job_command(runtime, slurm_env)),
        attach_session=attach_session,
        dial=dial_pod,
        authorize=authorize,
    )
