"""Container images: getting them onto the node as the kubelet does, and telling the user. Pure.

The kubelet pulls a container's image before it creates the container, per
``imagePullPolicy``, with the pod's ``imagePullSecrets``, retrying a failed pull with back-off
(the pod never fails for it), and reports each step: container waiting with ``ErrImagePull``,
then ``ImagePullBackOff`` (``ErrImageNeverPull`` for a missing image with policy ``Never``), and
events ``Pulling``, ``Pulled`` (``Successfully pulled image "X" in 1.2s``), ``Failed``,
``BackOff``. Mobius does the pulling in the job, on the node that will run the container:

* The job script's ``pull_image`` (:data:`SHELL_PULL`) runs the runtime's image step
  (:meth:`~mobius.runtime.base.Runtime.pull_command`) before the container's first start and
  writes the outcome to ``ctl/c/<name>.pull`` (:class:`~mobius.pods.records.PullRecord`); it
  retries a failed pull after 10 s, doubling up to 300 s, as the kubelet's back-off does.
* The runtimes pull one image at a time per node and user (under ``flock``, keyed by the full
  reference); a pull that finished while a pod waited for the lock answers for that pod too, so
  a burst of pods on one uncached image costs one pull.
* The poller reads the record; :func:`image_waiting` gives the container's waiting state and
  :func:`image_events` the events, once each per container.
* ``imagePullSecrets``: the ``kubernetes.io/dockerconfigjson`` (and legacy
  ``kubernetes.io/dockercfg``) Secrets become :class:`PullAuth`, written by the submitter into
  the pod folder, private to the job's user (:func:`auth_files`): ``auth.json`` for podman's
  ``--authfile`` (containers-auth.json), and for Apptainer one login per container whose image's
  registry matches (``APPTAINER_DOCKER_USERNAME``/``PASSWORD`` of the build). A pull secret that
  does not exist only earns a Warning event, as in Kubernetes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

import msgspec

from mobius.models import Container, Pod
from mobius.pods.env import PodRefs, PodWarning
from mobius.pods.probes import ContainerEvent
from mobius.pods.records import ContainerRecord, PodRecord, PullRecord

__all__ = [
    "AUTH_FILE",
    "LOGINS_DIR",
    "SHELL_PULL",
    "WAITING_REASONS",
    "PullAuth",
    "RegistryLogin",
    "auth_files",
    "image_events",
    "image_location",
    "image_waiting",
    "pull_auth",
    "pull_secret_names",
]

AUTH_FILE = "auth.json"  # in the pod folder: podman --authfile
LOGINS_DIR = "pull-auth"  # in the pod folder: <container>: "<username>\0<password>\0"
PULL_BACKOFF_START, PULL_BACKOFF_MAX = 10, 300  # seconds, the kubelet's image back-off
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG = "kubernetes.io/dockercfg"
_DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
WAITING_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"})

# The job script's part, once per script; the container functions call pull_image.
SHELL_PULL = rf"""# pull_image NAME STEP...: make container NAME's image ready with the runtime's STEP before
# the container first starts, and say how it went in ctl/c/NAME.pull (mobius.pods.records).
# STEP prints "present", "pulled <µs>" or "kept" (the pull failed; the node's copy is used)
# and exits 0, or says why on stderr and exits 1 (the pull failed) or 2 (not on the node and
# imagePullPolicy is Never); it calls "pulling" when a pull really starts. Failures are retried
# after {PULL_BACKOFF_START} s, doubling up to {PULL_BACKOFF_MAX} s, until the pod stops: as in
# Kubernetes, an image that cannot be pulled keeps the container waiting, it never fails the pod.
pulling() {{ put "$PULL_RECORD" "pulling $PULL_ATTEMPT $(now)"; }}
pull_image() {{
  local name=$1 delay={PULL_BACKOFF_START} began out rc why err line waited
  shift
  PULL_RECORD="c/$name.pull" PULL_ATTEMPT=0
  err=$(mktemp "${{TMPDIR:-/tmp}}/mobius-pull.XXXXXX") || return 1
  while :; do
    PULL_ATTEMPT=$((PULL_ATTEMPT + 1))
    began=${{EPOCHREALTIME/./}}
    out=$("$@" 2>"$err" </dev/null)
    rc=$?
    why=
    while IFS= read -r line; do [ -n "${{line//[[:space:]]/}}" ] && why=$line; done < <(tail -n 5 "$err")
    why=${{why//[^[:print:]]/ }}
    why=${{why:0:500}}
    case $rc:$out in
      0:present) put "$PULL_RECORD" "present $PULL_ATTEMPT $(now)"; break ;;
      "0:pulled "*) put "$PULL_RECORD" "pulled $PULL_ATTEMPT $(now) ${{out#pulled }} $((${{EPOCHREALTIME/./}} - began))"; break ;;
      0:kept) put "$PULL_RECORD" "kept $PULL_ATTEMPT $(now) $why"; break ;;
      2:*) put "$PULL_RECORD" "absent $PULL_ATTEMPT $(now) $why" ;;
      *) put "$PULL_RECORD" "failed $PULL_ATTEMPT $(now) ${{why:-exit status $rc}}" ;;
    esac
    waited=0
    while [ "$waited" -lt "$delay" ]; do
      [ -e "$CTL/stopping" ] && {{ rm -f "$err"; return 1; }}
      sleep 1
      waited=$((waited + 1))
    done
    delay=$((delay * 2 > {PULL_BACKOFF_MAX} ? {PULL_BACKOFF_MAX} : delay * 2))
  done
  rm -f "$err"
}}"""


# --- imagePullSecrets ---------------------------------------------------------------------------


class RegistryLogin(msgspec.Struct, frozen=True):
    """Credentials for the images under ``location`` (``host[:port][/path]``; the host may start
    with ``*.``, matching one label), from a pull secret."""

    location: str
    username: str
    password: str

    def __repr__(self) -> str:  # never show the password
        return f"<RegistryLogin {self.location} {self.username}>"


class PullAuth(msgspec.Struct, frozen=True):
    """What the pod's ``imagePullSecrets`` give: logins, in the order Kubernetes tries them
    (the secrets' order, then the keys'), and what the user should hear about."""

    logins: tuple[RegistryLogin, ...] = ()
    warnings: tuple[PodWarning, ...] = ()

    def login_for(self, image: str) -> RegistryLogin | None:
        """The login for ``image``: the most specific location that matches it, first wins."""
        where = image_location(image)
        best: RegistryLogin | None = None
        for login in self.logins:
            if _matches(login.location, where) and (
                best is None or _specificity(login.location) > _specificity(best.location)
            ):
                best = login
        return best


def pull_secret_names(pod: Pod) -> frozenset[str]:
    """The Secrets the pod names in ``imagePullSecrets``."""
    return frozenset(ref.name for ref in pod.spec.image_pull_secrets if ref.name)


def _location(key: str) -> str | None:
    """A docker config key (``https://index.docker.io/v1/``, ``registry:5000/team``) as
    ``host[:port][/path]``, Docker Hub as ``docker.io``; None for one that names no host."""
    key = key.strip()
    key = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", key).rstrip("/")
    host, _, path = key.partition("/")
    if path in ("v1", "v2"):  # the legacy Docker Hub key, https://index.docker.io/v1/
        path = ""
    host = host.lower()
    if not host or not re.fullmatch(r"(\*\.)?[a-z0-9.-]+(:[0-9]+)?", host):
        return None
    if host in _DOCKER_HUB_ALIASES:
        host = _DOCKER_HUB
    return f"{host}/{path}" if path else host


def image_location(image: str) -> str:
    """``host[:port]/path`` of an image reference, with Docker Hub's defaults (``busybox`` is
    ``docker.io/library/busybox``), without tag or digest."""
    name = image.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first.lower(), rest
    else:
        host, path = _DOCKER_HUB, name if rest else f"library/{name}"
    if host in _DOCKER_HUB_ALIASES:
        host = _DOCKER_HUB
    last = path.rsplit("/", 1)
    if ":" in last[-1]:
        path = path[: len(path) - len(last[-1])] + last[-1].split(":", 1)[0]
    return f"{host}/{path}"


def _matches(location: str, where: str) -> bool:
    """Whether a login's location covers the image at ``where`` (Kubernetes' keyring rules:
    the host label by label, ``*`` for one label, the port if given, the path as a prefix)."""
    host, _, path = location.partition("/")
    image_host, _, image_path = where.partition("/")
    name, _, port = host.partition(":")
    image_name, _, image_port = image_host.partition(":")
    if port != image_port:
        return False
    labels, image_labels = name.split("."), image_name.split(".")
    if len(labels) != len(image_labels):
        return False
    if any(a != "*" and a != b for a, b in zip(labels, image_labels, strict=True)):
        return False
    return not path or image_path == path or image_path.startswith(path + "/")


def _specificity(location: str) -> tuple[int, int]:
    host, _, path = location.partition("/")
    return (0 if "*" in host else 1, len(path))


def _entries(raw: bytes, *, json_key: bool) -> dict[str, Any]:
    config = json.loads(raw)
    if not isinstance(config, dict):
        raise ValueError("not a JSON object")
    auths = config.get("auths", {}) if json_key else config
    if not isinstance(auths, dict):
        raise ValueError("auths is not a JSON object")
    return auths


def _login(location: str, entry: Any) -> RegistryLogin | None:
    if not isinstance(entry, dict):
        return None
    username, password = entry.get("username") or "", entry.get("password") or ""
    if entry.get("auth") and not (username or password):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return None
    return RegistryLogin(location, username, password)


def pull_auth(pod: Pod, refs: PodRefs) -> PullAuth:
    """The logins of the pod's pull secrets (fetched into ``refs``), and a Warning for the
    secrets that are missing or unusable: Kubernetes goes on without them."""
    logins: list[RegistryLogin] = []
    missing: list[str] = []
    unusable: list[str] = []
    for ref in pod.spec.image_pull_secrets:
        data = refs.secrets.get(ref.name)
        if data is None:
            missing.append(ref.name)
            continue
        kind = refs.secret_types.get(ref.name, "")
        key = ".dockerconfigjson" if kind == DOCKER_CONFIG_JSON else ".dockercfg"
        if kind not in (DOCKER_CONFIG_JSON, DOCKER_CONFIG) or not data.get(key):
            unusable.append(f"{ref.name} (type {kind or 'Opaque'}, needs {DOCKER_CONFIG_JSON})")
            continue
        try:
            entries = _entries(data[key], json_key=kind == DOCKER_CONFIG_JSON)
        except (ValueError, UnicodeDecodeError):
            unusable.append(f"{ref.name} ({key} is not a docker config)")
            continue
        for raw_key, entry in entries.items():
            location = _location(str(raw_key))
            login = _login(location, entry) if location else None
            if login is not None:
                logins.append(login)
    warnings = []
    if missing:
        warnings.append(
            PodWarning(
                "FailedToRetrieveImagePullSecret",
                f"Unable to retrieve some image pull secrets ({', '.join(missing)}); "
                "attempting to pull the image may not succeed.",
            )
        )
    if unusable:
        warnings.append(
            PodWarning(
                "FailedToRetrieveImagePullSecret",
                f"Some image pull secrets hold no registry credentials: {', '.join(unusable)}",
            )
        )
    return PullAuth(logins=tuple(logins), warnings=tuple(warnings))


def _containers(pod: Pod) -> Iterable[Container]:
    yield from pod.spec.init_containers
    yield from pod.spec.containers


def auth_files(pod: Pod, auth: PullAuth) -> dict[str, bytes]:
    """The files to write (mode 0600) in the pod folder for the runtimes: ``auth.json``
    (containers-auth.json, one entry per location; a ``*.`` location becomes the hosts of the
    pod's images it covers, which that format cannot say) and ``pull-auth/<container>``
    (``<username>\\0<password>\\0``) for each container whose image has a login. Nothing
    without logins."""
    if not auth.logins:
        return {}
    auths: dict[str, dict[str, str]] = {}
    images = [c.image for c in _containers(pod)]
    for login in auth.logins:
        token = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
        if "*" in login.location:
            keys = [
                image_location(i).split("/", 1)[0]
                for i in images
                if _matches(login.location, image_location(i))
            ]
        else:
            keys = [login.location]
        for key in keys:
            auths.setdefault(key, {"auth": token})
    files = {AUTH_FILE: json.dumps({"auths": auths}, indent=2).encode() + b"\n"}
    for c in _containers(pod):
        found = auth.login_for(c.image)
        if found is not None:
            files[f"{LOGINS_DIR}/{c.name}"] = (
                found.username.encode() + b"\0" + found.password.encode() + b"\0"
            )
    return files


# --- what the job reports -----------------------------------------------------------------------


def _seconds(us: int) -> str:
    """A duration as Go prints one (what the kubelet's messages show): ``812ms``, ``1.5s``."""
    if us < 1_000_000:
        return f"{us // 1000}ms"
    text = f"{us / 1_000_000:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def image_waiting(c: Container, pull: PullRecord | None) -> dict[str, str] | None:
    """The waiting state of a container held up by its image (not yet started), else None."""
    if pull is None:
        return None
    if pull.state == "absent":
        return {
            "reason": "ErrImageNeverPull",
            "message": f'Container image "{c.image}" is not present with pull policy of Never',
        }
    if pull.state == "failed" and pull.attempt == 1:
        return {"reason": "ErrImagePull", "message": pull.message}
    if pull.state in ("failed", "pulling") and pull.attempt > 1:
        message = f'Back-off pulling image "{c.image}"'
        if pull.state == "failed" and pull.message:
            message += f": ErrImagePull: {pull.message}"
        return {"reason": "ImagePullBackOff", "message": message}
    return None


_NONE = ContainerRecord()


def image_events(pod: Pod, old: PodRecord, new: PodRecord) -> list[ContainerEvent]:
    """The events for what the job's image steps wrote between two reads of its control files,
    each reason once per container: Pulling, Pulled, Failed, BackOff, ErrImageNeverPull."""
    events: list[ContainerEvent] = []
    for c in _containers(pod):
        now = new.containers.get(c.name, _NONE).pull
        if now is None:
            continue
        was = old.containers.get(c.name, _NONE).pull
        if was == now:
            continue
        # What the poller saw before: nothing, or the state and attempt of the last read.
        before, tried = (was.state, was.attempt) if was is not None else ("", 0)
        image = c.image
        if now.state in ("pulling", "pulled", "kept", "failed") and before in (
            "",
            "present",
            "absent",
        ):
            events.append(ContainerEvent(c.name, "Normal", "Pulling", f'Pulling image "{image}"'))
        if now.state == "pulled" and before != "pulled":
            took = _seconds(now.pull_us or 0)
            message = f'Successfully pulled image "{image}" in {took}'
            if now.total_us is not None and now.total_us - (now.pull_us or 0) >= 1000:
                message += f" ({_seconds(now.total_us)} including waiting)"
            events.append(ContainerEvent(c.name, "Normal", "Pulled", message))
        elif now.state == "present" and before != "present":
            message = f'Container image "{image}" already present on machine'
            events.append(ContainerEvent(c.name, "Normal", "Pulled", message))
        elif now.state == "kept" and before != "kept":
            message = (
                f'Container image "{image}" already present on machine; pulling it again '
                f"failed: {now.message}"
            )
            events.append(ContainerEvent(c.name, "Normal", "Pulled", message))
        if now.state == "failed" and (tried == 0 or (tried == 1 and before != "failed")):
            message = f'Failed to pull image "{image}": {now.message}'
            events.append(ContainerEvent(c.name, "Warning", "Failed", message))
        held = image_waiting(c, now)
        if held is not None and held["reason"] == "ImagePullBackOff" and tried <= 1:
            message = f'Back-off pulling image "{image}"'
            events.append(ContainerEvent(c.name, "Normal", "BackOff", message))
        if now.state == "absent" and before != "absent":
            message = f'Container image "{image}" is not present with pull policy of Never'
            events.append(ContainerEvent(c.name, "Warning", "ErrImageNeverPull", message))
    return events
