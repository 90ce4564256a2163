"""The one exception tree of Mobius.

Errors are split by cause, so that a caller catches exactly what it can handle::

    MobiusError
    ├── ConfigError                 bad settings or command-line options (what to change)
    ├── ApiError                    the Kubernetes API answered with an error Status
    │   ├── Unauthorized            401
    │   ├── Forbidden               403
    │   ├── NotFound                404
    │   ├── Conflict                409 (resourceVersion mismatch, AlreadyExists)
    │   ├── Gone                    410 (watch resourceVersion too old: relist)
    │   ├── Invalid                 422
    │   ├── TooManyRequests         429
    │   └── ServerError             5xx
    ├── ApiUnreachable              the API server could not be reached at all
    ├── SlurmCommandError           a Slurm command failed (argv, exit code, stderr)
    ├── ParseError                  Slurm (or other) output that could not be parsed (the line)
    ├── InvalidPodSpec              a pod Mobius cannot run (which field, why)
    │   └── MissingReference        ... yet: a ConfigMap/Secret (key) it needs does not exist
    ├── StartupError                a component (etcd, API server, slurmctld, ...) did not start
    └── (kubelet streams, defined beside their protocols in mobius/kubelet/streams)
        ├── SpdyProtocolError       a peer broke SPDY/3.1 framing
        ├── WebSocketRefused        a WebSocket upgrade that cannot be served
        └── ExecFailed              a command could not be started in the pod's container

Foreign exceptions (httpx, OSError from subprocesses, msgspec) are translated only at the
adapter boundary, always with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence


class MobiusError(Exception):
    """Base of every error Mobius raises on purpose."""


class ConfigError(MobiusError):
    """Settings or options that cannot work; the message says what to change."""


class ApiError(MobiusError):
    """The Kubernetes API answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str, *, method: str = "", url: str = ""):
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.url = url
        super().__init__(f"{method} {url}: {status} {reason}: {message}".strip())


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    pass


class Invalid(ApiError):
    pass


class TooManyRequests(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def api_error(
    status: int, reason: str, message: str, *, method: str = "", url: str = ""
) -> ApiError:
    """The ApiError subclass for an HTTP status."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, reason, message, method=method, url=url)


class ApiUnreachable(MobiusError):
    """The API server could not be reached (connection refused, TLS failure, timeout)."""


class SlurmCommandError(MobiusError):
    """A Slurm command exited non-zero or could not be started."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(
            f"{' '.join(self.argv[:1])} exited {returncode}: {self.stderr or '(no stderr)'}"
        )


class ParseError(MobiusError):
    """Output that could not be parsed; carries the offending line."""

    def __init__(self, what: str, line: str, lineno: int | None = None):
        self.what = what
        self.line = line
        self.lineno = lineno
        where = f" line {lineno}" if lineno is not None else ""
        super().__init__(f"cannot parse {what}{where}: {line!r}")


class InvalidPodSpec(MobiusError):
    """A pod that Mobius cannot run, naming the field and the reason."""

    def __init__(self, field: str, why: str):
        self.field = field
        self.why = why
        super().__init__(f"{field}: {why}")


class MissingReference(InvalidPodSpec):
    """A ConfigMap, Secret or key the pod's environment needs does not exist (yet).

    As the kubelet does (``CreateContainerConfigError``), the pod waits and is tried again:
    creating the object lets it start.
    """


class StartupError(MobiusError):
    """A component did not start; the message says which and where its log is."""
