"""Pod volumes -> the files to write under the pod's folder and what each container mounts.

Pure: the ConfigMaps, Secrets and node facts the volumes refer to arrive as
:class:`~mobius.pods.env.PodRefs` (fetched because :func:`pod_needs` asked for them), and
service-account tokens stay placeholders (:class:`TokenSpec`) that the adapter writing the files
(:mod:`mobius.kube.volumes`) fills from the TokenRequest API. The rules are the kubelet's
(``pkg/volume/{configmap,secret,downwardapi,projected,hostpath,emptydir}`` and
``pkg/kubelet/kubelet_pods.go`` of Kubernetes v1.36):

* Every volume is a folder ``<pod dir>/volumes/<name>`` on the storage the Slurm nodes share,
  except hostPath, which is a path of the node running the job.
* configMap, secret, downwardAPI and projected volumes are written as the kubelet's
  ``AtomicWriter`` writes them (a ``..data`` symlink swapped at once), and are always mounted
  read-only. ``items`` pick and rename keys; a mode is ``mode``, else ``defaultMode``, else
  0644 (0600 for Secrets; the API server sets ``defaultMode: 420`` on pods it stores, so this
  fallback only serves pods that never went through it). A missing ConfigMap or Secret, or a
  missing key, is a :class:`~mobius.errors.MissingReference` (the pod waits, with the kubelet's
  ``MountVolume.SetUp failed`` message) unless ``optional``: then it is left out.
* emptyDir: a folder shared by the pod's containers, on disk (``medium: Memory`` and
  ``sizeLimit`` cannot be honoured and are reported in a Warning event).
* hostPath: the ``type`` is checked as the kubelet checks it, by the job script on the node
  that runs the pod (:func:`node_setup`), since the kubelet's host is not that node.
* persistentVolumeClaim: the claim (and the PersistentVolume the controller manager bound to
  it) arrive in :class:`~mobius.pods.env.PodRefs`. A claim that does not exist or is not bound
  yet is a :class:`~mobius.errors.MissingReference` with the kubelet's message (the pod waits).
  A hostPath or local PersistentVolume is then a hostPath volume of its path (a local volume's
  ``nodeAffinity`` is not checked: the virtual node stands for the whole cluster, whose nodes
  share their file systems; a Warning event says so). An nfs PersistentVolume cannot be
  mounted without root: the pod fails with a message suggesting a hostPath PersistentVolume of
  the path where the nodes already mount the export. The mount is read-only when the volume
  says ``readOnly`` or the claim asks only for ``ReadOnlyMany``.
* subPath / subPathExpr (``$(VAR)`` from the container's environment, an unknown or empty
  variable being an error): a path inside the volume, created as a folder on the node when it
  does not exist. As in Kubernetes, a subPath mount of a ConfigMap or Secret file does not see
  later updates.

Any other volume type fails the pod with an :class:`~mobius.errors.InvalidPodSpec` naming the
volume and its type (for a claim: the PersistentVolume and its type).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from shlex import quote

import msgspec

from mobius.errors import InvalidPodSpec, MissingReference
from mobius.models import Container, Pod
from mobius.models.core import (
    DownwardAPIVolumeFile,
    KeyToPath,
    PersistentVolume,
    Volume,
    VolumeMount,
)
from mobius.pods.env import (
    Needs,
    PodRefs,
    PodWarning,
    container_env,
    expand,
    needs,
    object_name,
    resource_field_value,
)
from mobius.pods.images import pull_secret_names
from mobius.runtime.base import Late, Mount, Text

__all__ = [
    "SUPPORTED_TYPES",
    "EmptyDirVolume",
    "FilesVolume",
    "HostPathVolume",
    "PlannedVolume",
    "TokenSpec",
    "VolumeFile",
    "VolumePlan",
    "files_volume",
    "node_setup",
    "plan_volumes",
    "pod_needs",
    "volume_dir",
    "volume_needs",
]

SUPPORTED_TYPES = (
    "emptyDir",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
    "hostPath",
    "persistentVolumeClaim",
)
PERSISTENT_TYPES = ("hostPath", "local")  # the PersistentVolumes a claim may be bound to
HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
DEFAULT_MODE = 0o644
SECRET_DEFAULT_MODE = 0o600
DEFAULT_TOKEN_SECONDS = 3600  # the API server's default expirationSeconds of a token projection
VOLUMES_DIR = "volumes"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DOWNWARD_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
    "metadata.labels['<KEY>']",
    "metadata.annotations['<KEY>']",
)


class TokenSpec(msgspec.Struct, frozen=True):
    """A service-account token to request for the pod (TokenRequest API), bound to the pod."""

    service_account: str
    audience: str = ""  # "": the API server's own audiences
    expiration_seconds: int = DEFAULT_TOKEN_SECONDS


class VolumeFile(msgspec.Struct, frozen=True):
    """One file of a volume: a path relative to the volume, its mode and content; a file with a
    ``token`` holds the token the writer requests."""

    path: str
    mode: int
    data: bytes = b""
    token: TokenSpec | None = None

    def __repr__(self) -> str:  # never show the content (Secrets, tokens)
        what = "token" if self.token is not None else f"{len(self.data)} bytes"
        return f"<VolumeFile {self.path} {self.mode:04o} {what}>"


class FilesVolume(msgspec.Struct, frozen=True):
    """A configMap, secret, downwardAPI or projected volume: files written atomically."""

    name: str
    kind: str
    files: tuple[VolumeFile, ...] = ()


class EmptyDirVolume(msgspec.Struct, frozen=True):
    name: str
    medium: str = ""
    size_limit: str = ""


class HostPathVolume(msgspec.Struct, frozen=True):
    """A path of the node: a hostPath volume, or the hostPath or local PersistentVolume
    (``persistent_volume``) bound to the volume's claim."""

    name: str
    path: str
    type: str = ""
    read_only: bool = False
    persistent_volume: str = ""


PlannedVolume = FilesVolume | EmptyDirVolume | HostPathVolume


class VolumePlan(msgspec.Struct, frozen=True):
    """What a pod's volumes need: folders and files under the pod's folder, node-side checks,
    and each container's mounts (by container name)."""

    volumes: tuple[PlannedVolume, ...] = ()
    mounts: dict[str, tuple[Mount, ...]] = {}
    sub_paths: tuple[str, ...] = ()  # mount sources inside a volume: folders made if missing
    warnings: tuple[PodWarning, ...] = ()

    def tokens(self) -> frozenset[TokenSpec]:
        """The distinct tokens the volumes hold."""
        return frozenset(
            f.token
            for v in self.volumes
            if isinstance(v, FilesVolume)
            for f in v.files
            if f.token is not None
        )


def volume_dir(pod_dir: str, name: str) -> str:
    """Where volume ``name`` of the pod lives (not for hostPath)."""
    return f"{pod_dir}/{VOLUMES_DIR}/{name}"


# --- what the volumes refer to ------------------------------------------------------------------


def _valid_name(name: str) -> bool:
    try:
        object_name(name, "", "")
    except InvalidPodSpec:
        return False
    return True


def volume_needs(pod: Pod) -> Needs:
    """The ConfigMaps, Secrets and PersistentVolumeClaims (and whether the node) the pod's
    volumes refer to."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    claims: set[str] = set()
    node = False
    for v in pod.spec.volumes:
        if v.persistent_volume_claim is not None:
            claims.add(v.persistent_volume_claim.claim_name)
        elif v.config_map is not None:
            config_maps.add(v.config_map.name)
        elif v.secret is not None:
            secrets.add(v.secret.secret_name)
        elif v.downward_api is not None:
            node = node or any(i.resource_field_ref for i in v.downward_api.items)
        elif v.projected is not None:
            for src in v.projected.sources:
                if src.config_map is not None:
                    config_maps.add(src.config_map.name)
                elif src.secret is not None:
                    secrets.add(src.secret.name)
                elif src.downward_api is not None:
                    node = node or any(i.resource_field_ref for i in src.downward_api.items)
    return Needs(
        config_maps=frozenset(filter(_valid_name, config_maps)),
        secrets=frozenset(filter(_valid_name, secrets)),
        service_links=False,
        node=node,
        claims=frozenset(filter(_valid_name, claims)),
    )


def pod_needs(pod: Pod) -> Needs:
    """Everything to fetch before the pod's job can be rendered: its environment's and its
    volumes' references, and its image pull secrets."""
    env, vol = needs(pod), volume_needs(pod)
    pull = frozenset(filter(_valid_name, pull_secret_names(pod)))
    return Needs(
        config_maps=env.config_maps | vol.config_maps,
        secrets=env.secrets | vol.secrets | pull,
        service_links=env.service_links,
        node=env.node or vol.node,
        claims=vol.claims,
    )


# --- files of one volume ------------------------------------------------------------------------


def _mode(mode: int | None, default: int, field: str) -> int:
    if mode is None:
        return default
    if not 0 <= mode <= 0o777:
        raise InvalidPodSpec(field, f"mode {mode} is not between 0 and 0777 (511)")
    return mode


def _relative(path: str, field: str, what: str = "path") -> str:
    """A path inside a volume (``validateLocalDescendingPath``), normalised."""
    if not path or "\x00" in path:
        raise InvalidPodSpec(field, f"{what} {path!r} must be a non-empty relative path")
    if path.startswith("/"):
        raise InvalidPodSpec(field, f"{what} {path!r} must be relative")
    norm = posixpath.normpath(path)
    if ".." in path.split("/"):
        raise InvalidPodSpec(field, f"{what} {path!r} must not contain '..'")
    if norm.startswith(".."):
        raise InvalidPodSpec(field, f"{what} {path!r} must not start with '..'")
    if norm == ".":
        raise InvalidPodSpec(field, f"{what} {path!r} names the volume itself")
    return norm


def _key_files(
    data: dict[str, bytes],
    items: list[KeyToPath],
    *,
    mode: int,
    optional: bool,
    field: str,
    missing_key: str,
) -> list[VolumeFile]:
    """``MakePayload`` of configMap and secret volumes: every key, or the ``items``."""
    if not items:
        return [VolumeFile(path=_relative(k, field, "key"), mode=mode, data=data[k]) for k in data]
    files = []
    for i, item in enumerate(items):
        where = f"{field}.items[{i}]"
        if item.key not in data:
            if optional:
                continue
            raise MissingReference(where, f"{missing_key}: {item.key}")
        files.append(
            VolumeFile(
                path=_relative(item.path, f"{where}.path"),
                mode=_mode(item.mode, mode, f"{where}.mode"),
                data=data[item.key],
            )
        )
    return files


def _go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (``%q``), as the kubelet formats label and annotation values."""
    escapes = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
    escapes |= {"\v": r"\v", '"': r"\"", "\\": r"\\"}
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _format_map(values: dict[str, str]) -> str:
    """``fieldpath.FormatMap``: ``key="value"`` lines in key order."""
    return "\n".join(f"{k}={_go_quote(values[k])}" for k in sorted(values))


def _downward_file(
    pod: Pod, item: DownwardAPIVolumeFile, *, mode: int, refs: PodRefs, field: str
) -> VolumeFile:
    path = _relative(item.path, f"{field}.path")
    mode = _mode(item.mode, mode, f"{field}.mode")
    meta = pod.metadata
    if (item.field_ref is None) == (item.resource_field_ref is None):
        raise InvalidPodSpec(field, "needs exactly one of fieldRef and resourceFieldRef")
    if item.field_ref is not None:
        fp = item.field_ref.field_path
        base, sep, rest = fp.partition("['")
        if sep and rest.endswith("']") and base in ("metadata.labels", "metadata.annotations"):
            values = meta.labels if base == "metadata.labels" else meta.annotations
            value = values.get(rest[:-2], "")
        elif fp in ("metadata.labels", "metadata.annotations"):
            value = _format_map(meta.labels if fp == "metadata.labels" else meta.annotations)
        elif fp in ("metadata.name", "metadata.namespace", "metadata.uid"):
            value = {"metadata.name": meta.name, "metadata.namespace": meta.namespace}.get(
                fp, meta.uid
            )
        else:
            raise InvalidPodSpec(
                f"{field}.fieldRef.fieldPath",
                f"{fp!r} is not supported in a volume; use one of {', '.join(_DOWNWARD_FIELDS)}",
            )
        return VolumeFile(path=path, mode=mode, data=value.encode())
    sel = item.resource_field_ref
    assert sel is not None
    if not sel.container_name:
        raise InvalidPodSpec(
            f"{field}.resourceFieldRef.containerName", "is required in a downwardAPI volume"
        )
    anchor = (pod.spec.containers or pod.spec.init_containers or [Container(name="")])[0]
    value = resource_field_value(pod, anchor, sel, refs, f"{field}.resourceFieldRef")
    return VolumeFile(path=path, mode=mode, data=value.encode())


def _config_map(refs: PodRefs, name: str) -> dict[str, bytes] | None:
    text = refs.config_maps.get(name)
    binary = refs.config_map_binary.get(name)
    if text is None and binary is None:
        return None
    return {**{k: v.encode() for k, v in (text or {}).items()}, **(binary or {})}


def _not_found(field: str, volume: str, kind: str, name: str) -> MissingReference:
    return MissingReference(
        field, f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found'
    )


def _check_paths(files: Iterable[VolumeFile], field: str) -> tuple[VolumeFile, ...]:
    """Each path once, and none both a file and a folder of others; sorted by path."""
    by_path: dict[str, VolumeFile] = {}
    for f in files:
        if f.path in by_path:
            raise InvalidPodSpec(field, f"conflicting duplicate paths: {f.path}")
        by_path[f.path] = f
    for path in by_path:
        parent = posixpath.dirname(path)
        while parent:
            if parent in by_path:
                raise InvalidPodSpec(field, f"{parent} is both a file and a folder of {path}")
            parent = posixpath.dirname(parent)
    return tuple(by_path[p] for p in sorted(by_path))


def files_volume(pod: Pod, index: int, *, refs: PodRefs) -> FilesVolume:
    """The files of ``pod.spec.volumes[index]``, a configMap, secret, downwardAPI or projected
    volume (what the kubelet writes at set-up and on every later sync)."""
    v = pod.spec.volumes[index]
    field = f"spec.volumes[{index}]"
    ns = pod.metadata.namespace
    files: list[VolumeFile] = []
    if v.config_map is not None:
        src, where = v.config_map, f"{field}.configMap"
        name = object_name(src.name, f"{where}.name", "ConfigMap")
        mode = _mode(src.default_mode, DEFAULT_MODE, f"{where}.defaultMode")
        data = _config_map(refs, name)
        if data is None and not src.optional:
            raise _not_found(where, v.name, "configmap", name)
        if data is not None:
            files = _key_files(
                data,
                src.items,
                mode=mode,
                optional=bool(src.optional),
                field=where,
                missing_key="configmap references non-existent config key",
            )
        return FilesVolume(v.name, "configMap", _check_paths(files, where))
    if v.secret is not None:
        ssrc, where = v.secret, f"{field}.secret"
        name = object_name(ssrc.secret_name, f"{where}.secretName", "Secret")
        mode = _mode(ssrc.default_mode, SECRET_DEFAULT_MODE, f"{where}.defaultMode")
        secret = refs.secrets.get(name)
        if secret is None and not ssrc.optional:
            raise _not_found(where, v.name, "secret", name)
        if secret is not None:
            files = _key_files(
                secret,
                ssrc.items,
                mode=mode,
                optional=bool(ssrc.optional),
                field=where,
                missing_key="references non-existent secret key",
            )
        return FilesVolume(v.name, "secret", _check_paths(files, where))
    if v.downward_api is not None:
        where = f"{field}.downwardAPI"
        mode = _mode(v.downward_api.default_mode, DEFAULT_MODE, f"{where}.defaultMode")
        files = [
            _downward_file(pod, item, mode=mode, refs=refs, field=f"{where}.items[{i}]")
            for i, item in enumerate(v.downward_api.items)
        ]
        return FilesVolume(v.name, "downwardAPI", _check_paths(files, where))
    if v.projected is not None:
        where = f"{field}.projected"
        mode = _mode(v.projected.default_mode, DEFAULT_MODE, f"{where}.defaultMode")
        for j, source in enumerate(v.projected.sources):
            at = f"{where}.sources[{j}]"
            if source.config_map is not None:
                cm = source.config_map
                name = object_name(cm.name, f"{at}.configMap.name", "ConfigMap")
                data = _config_map(refs, name)
                if data is None and not cm.optional:
                    raise _not_found(f"{at}.configMap", v.name, "configmap", name)
                if data is not None:
                    files += _key_files(
                        data,
                        cm.items,
                        mode=mode,
                        optional=bool(cm.optional),
                        field=f"{at}.configMap",
                        missing_key="configmap references non-existent config key",
                    )
            elif source.secret is not None:
                sp = source.secret
                name = object_name(sp.name, f"{at}.secret.name", "Secret")
                secret = refs.secrets.get(name)
                if secret is None and not sp.optional:
                    raise _not_found(f"{at}.secret", v.name, "secret", name)
                if secret is not None:
                    files += _key_files(
                        secret,
                        sp.items,
                        mode=mode,
                        optional=bool(sp.optional),
                        field=f"{at}.secret",
                        missing_key="references non-existent secret key",
                    )
            elif source.downward_api is not None:
                files += [
                    _downward_file(
                        pod, item, mode=mode, refs=refs, field=f"{at}.downwardAPI.items[{i}]"
                    )
                    for i, item in enumerate(source.downward_api.items)
                ]
            elif source.service_account_token is not None:
                tok = source.service_account_token
                seconds = tok.expiration_seconds or DEFAULT_TOKEN_SECONDS
                if seconds < 600:
                    raise InvalidPodSpec(
                        f"{at}.serviceAccountToken.expirationSeconds",
                        "may not be less than 10 minutes (600)",
                    )
                account = pod.spec.service_account_name or "default"
                spec = TokenSpec(account, audience=tok.audience, expiration_seconds=seconds)
                path = _relative(tok.path, f"{at}.serviceAccountToken.path")
                files.append(VolumeFile(path=path, mode=mode, token=spec))
            else:
                kinds = [
                    f.encode_name
                    for f in msgspec.structs.fields(source)
                    if getattr(source, f.name) is not None
                ]
                raise InvalidPodSpec(
                    at,
                    f'volume "{v.name}" (namespace {ns}) projects '
                    f"{' and '.join(kinds) or 'nothing'}, which Mobius does not support; "
                    "projected volumes may hold configMap, secret, downwardAPI and "
                    "serviceAccountToken sources",
                )
        return FilesVolume(v.name, "projected", _check_paths(files, where))
    raise InvalidPodSpec(
        field, f'volume "{v.name}" is not a configMap, secret, downwardAPI or projected volume'
    )


# --- the whole pod ------------------------------------------------------------------------------


def _volume_type(v: Volume, field: str) -> str:
    types = v.types()
    if len(types) > 1:
        raise InvalidPodSpec(
            field, f'volume "{v.name}" sets {", ".join(types)}: a volume has exactly one type'
        )
    if not types:
        raise InvalidPodSpec(
            field,
            f'volume "{v.name}" is of a type Mobius does not know; supported: '
            + ", ".join(SUPPORTED_TYPES),
        )
    kind = types[0]
    if kind not in SUPPORTED_TYPES:
        raise InvalidPodSpec(
            f"{field}.{kind}",
            f'volume "{v.name}" is of type {kind}, which Mobius does not support; supported: '
            + ", ".join(SUPPORTED_TYPES),
        )
    return kind


def _host_path(v: Volume, field: str) -> HostPathVolume:
    assert v.host_path is not None
    path, kind = v.host_path.path, v.host_path.type or ""
    if not path.startswith("/") or "\x00" in path:
        raise InvalidPodSpec(f"{field}.hostPath.path", f"{path!r} must be an absolute path")
    if ".." in path.split("/"):
        raise InvalidPodSpec(f"{field}.hostPath.path", f"{path!r} must not contain '..'")
    if kind not in HOST_PATH_TYPES:
        raise InvalidPodSpec(
            f"{field}.hostPath.type",
            f"{kind!r} is not a hostPath type; use one of "
            + ", ".join(repr(t) for t in HOST_PATH_TYPES),
        )
    return HostPathVolume(v.name, posixpath.normpath(path), kind)


def _absolute(path: str, field: str) -> str:
    if not path.startswith("/") or "\x00" in path:
        raise InvalidPodSpec(field, f"{path!r} must be an absolute path")
    if ".." in path.split("/"):
        raise InvalidPodSpec(field, f"{path!r} must not contain '..'")
    return posixpath.normpath(path)


def _claim(pod: Pod, v: Volume, field: str, *, refs: PodRefs, notes: list[str]) -> HostPathVolume:
    """The node path of the PersistentVolume bound to the volume's claim (see the module
    notes); MissingReference while there is none, with the kubelet's messages."""
    src = v.persistent_volume_claim
    assert src is not None
    where = f"{field}.persistentVolumeClaim"
    name = object_name(src.claim_name, f"{where}.claimName", "PersistentVolumeClaim")
    ns = pod.metadata.namespace

    def waiting(why: str) -> MissingReference:
        return MissingReference(
            where,
            f"Unable to attach or mount volumes: unmounted volumes=[{v.name}]: "
            f"error processing PVC {ns}/{name}: {why}",
        )

    claim = refs.claims.get(name)
    if claim is None:
        raise waiting(
            f'failed to fetch PVC from API server: persistentvolumeclaims "{name}" not found'
        )
    volume_name = claim.spec.volume_name
    if claim.status.phase != "Bound" or not volume_name:
        raise waiting(f"PVC is not bound (phase {claim.status.phase or 'Pending'})")
    pv = refs.persistent_volumes.get(volume_name)
    if pv is None:
        raise waiting(
            f'failed to fetch PV "{volume_name}" from API server: '
            f'persistentvolumes "{volume_name}" not found'
        )
    bound = pv.spec.claim_ref
    if bound is None or (bound.uid and bound.uid != claim.metadata.uid):
        raise waiting(f'PV "{volume_name}" is not bound to this claim yet')
    read_only = src.read_only or claim.spec.access_modes == ["ReadOnlyMany"]
    return _persistent_volume(
        v, pv, f"{where}.claimName", claim=name, read_only=read_only, notes=notes
    )


def _persistent_volume(
    v: Volume, pv: PersistentVolume, field: str, *, claim: str, read_only: bool, notes: list[str]
) -> HostPathVolume:
    spec, pv_name = pv.spec, pv.metadata.name
    what = f'volume "{v.name}": PersistentVolume "{pv_name}" (bound to claim "{claim}")'
    if spec.host_path is not None:
        kind = spec.host_path.type or ""
        if kind not in HOST_PATH_TYPES:
            raise InvalidPodSpec(field, f"{what} has hostPath type {kind!r}, which is not one")
        path = _absolute(spec.host_path.path, field)
        return HostPathVolume(v.name, path, kind, read_only=read_only, persistent_volume=pv_name)
    if spec.local is not None:
        notes.append(
            f'local PersistentVolume "{pv_name}": nodeAffinity is not checked (the node stands '
            "for the whole cluster)"
        )
        path = _absolute(spec.local.path, field)
        return HostPathVolume(v.name, path, read_only=read_only, persistent_volume=pv_name)
    if spec.nfs is not None:
        export = f"{spec.nfs.get('server', '?')}:{spec.nfs.get('path', '?')}"
        raise InvalidPodSpec(
            field,
            f"{what} is an nfs volume ({export}), which Mobius cannot mount: mounting needs "
            "root on the node. Where the site already mounts that export on the Slurm nodes, "
            'make the PersistentVolume a hostPath one of that path (hostPath: {path: "/..."}).',
        )
    kinds = spec.types()
    raise InvalidPodSpec(
        field,
        f"{what} is of type {', '.join(kinds) or 'unknown'}, which Mobius cannot mount; "
        f"PersistentVolumes may be {' or '.join(PERSISTENT_TYPES)}",
    )


def _sub_path(
    pod: Pod, c: Container, vm: VolumeMount, *, refs: PodRefs, field: str, where: str
) -> str:
    """The mount's subPath, or its subPathExpr expanded with the container's environment
    (``ExpandContainerVolumeMounts``); "" for neither."""
    if vm.sub_path and vm.sub_path_expr:
        raise InvalidPodSpec(field, "subPath and subPathExpr are mutually exclusive")
    sub, what = vm.sub_path, "subPath"
    if vm.sub_path_expr:
        env = dict(container_env(pod, c, field=where, refs=refs).env)
        missing: set[str] = set()

        def lookup(name: str) -> Text:
            value = env.get(name, "")
            if value == "":
                missing.add(name)
            return value

        expanded = expand(vm.sub_path_expr, lookup)
        if missing:
            raise InvalidPodSpec(
                f"{field}.subPathExpr", f"missing value for {', '.join(sorted(missing))}"
            )
        if isinstance(expanded, Late):
            raise InvalidPodSpec(
                f"{field}.subPathExpr", "refers to the pod's IP, which is known only in the job"
            )
        sub, what = expanded, "subPathExpr"
    if not sub:
        return ""
    return _relative(sub, f"{field}.{what[0].lower()}{what[1:]}", what)


def _mounts(
    pod: Pod,
    c: Container,
    *,
    where: str,
    volumes: dict[str, PlannedVolume],
    pod_dir: str,
    refs: PodRefs,
    sub_paths: list[str],
) -> tuple[Mount, ...]:
    """The container's mounts; the sources of its subPath mounts are added to ``sub_paths``."""
    mounts: list[Mount] = []
    targets: set[str] = set()
    for j, vm in enumerate(c.volume_mounts):
        field = f"{where}.volumeMounts[{j}]"
        vol = volumes.get(vm.name)
        if vol is None:
            raise InvalidPodSpec(f"{field}.name", f"no volume named {vm.name!r} in spec.volumes")
        target = vm.mount_path
        if not target.startswith("/") or "\x00" in target:
            raise InvalidPodSpec(f"{field}.mountPath", f"{target!r} must be an absolute path")
        target = posixpath.normpath(target)
        if target in targets:
            raise InvalidPodSpec(f"{field}.mountPath", f"{target} is mounted twice")
        targets.add(target)
        sub = _sub_path(pod, c, vm, refs=refs, field=field, where=where)
        base = vol.path if isinstance(vol, HostPathVolume) else volume_dir(pod_dir, vol.name)
        source = posixpath.join(base, sub) if sub else base
        if sub:
            sub_paths.append(source)
        # configMap, secret, downwardAPI and projected volumes are always read-only.
        read_only = (
            vm.read_only
            or isinstance(vol, FilesVolume)
            or (isinstance(vol, HostPathVolume) and vol.read_only)
        )
        mounts.append(Mount(source=source, target=target, read_only=read_only, field=field))
    # Parents before what they contain, else the runtime mounts over a mount.
    return tuple(sorted(mounts, key=lambda m: m.target.count("/") - (m.target == "/")))


def _containers(pod: Pod) -> Iterable[tuple[str, Container]]:
    for i, c in enumerate(pod.spec.init_containers):
        yield f"spec.initContainers[{i}]", c
    for i, c in enumerate(pod.spec.containers):
        yield f"spec.containers[{i}]", c


def plan_volumes(pod: Pod, *, refs: PodRefs, pod_dir: str) -> VolumePlan:
    """The pod's volumes and mounts; InvalidPodSpec for what can never work, MissingReference
    for a ConfigMap, Secret or key that does not exist (yet)."""
    planned: dict[str, PlannedVolume] = {}
    notes: list[str] = []
    for i, v in enumerate(pod.spec.volumes):
        field = f"spec.volumes[{i}]"
        if not _DNS_LABEL.match(v.name):
            raise InvalidPodSpec(f"{field}.name", f"{v.name!r} is not a DNS label")
        if v.name in planned:
            raise InvalidPodSpec(f"{field}.name", f"volume {v.name!r} is defined twice")
        kind = _volume_type(v, field)
        if kind == "emptyDir":
            assert v.empty_dir is not None
            medium, limit = v.empty_dir.medium, str(v.empty_dir.size_limit or "")
            if medium:
                notes.append(f'emptyDir "{v.name}" has medium {medium} but is on disk')
            if limit:
                notes.append(f'emptyDir "{v.name}" has sizeLimit {limit}, which is not enforced')
            planned[v.name] = EmptyDirVolume(v.name, medium=medium, size_limit=limit)
        elif kind == "hostPath":
            planned[v.name] = _host_path(v, field)
        elif kind == "persistentVolumeClaim":
            planned[v.name] = _claim(pod, v, field, refs=refs, notes=notes)
        else:
            planned[v.name] = files_volume(pod, i, refs=refs)
    mounts: dict[str, tuple[Mount, ...]] = {}
    sub_paths: list[str] = []
    for where, c in _containers(pod):
        for j, vm in enumerate(c.volume_mounts):
            field = f"{where}.volumeMounts[{j}]"
            if vm.mount_propagation not in (None, "None"):
                notes.append(f"{field}.mountPropagation {vm.mount_propagation} (private)")
            if vm.recursive_read_only not in (None, "Disabled"):
                notes.append(f"{field}.recursiveReadOnly {vm.recursive_read_only}")
        mounts[c.name] = _mounts(
            pod, c, where=where, volumes=planned, pod_dir=pod_dir, refs=refs, sub_paths=sub_paths
        )
    if any(c.volume_devices for _, c in _containers(pod)):
        raise InvalidPodSpec(
            "spec.containers[*].volumeDevices", "raw block devices are not supported by Mobius"
        )
    warnings: tuple[PodWarning, ...] = ()
    if notes:
        warnings = (
            PodWarning(
                "VolumeSettingsIgnored",
                "Mobius cannot honour these volume settings: " + "; ".join(notes),
            ),
        )
    return VolumePlan(
        volumes=tuple(planned.values()),
        mounts=mounts,
        sub_paths=tuple(dict.fromkeys(sub_paths)),
        warnings=warnings,
    )


# --- the job script's part ----------------------------------------------------------------------

_HOST_PATH_CHECK = r"""# host_path TYPE PATH VOLUME: the kubelet's hostPath type check, on the node that runs the pod.
host_path() {
  local what=
  case $1 in
    DirectoryOrCreate) [ -e "$2" ] || mkdir -p -- "$2" || return 1 ;;&
    Directory*) what=directory; [ -d "$2" ] ;;
    FileOrCreate) [ -e "$2" ] || (umask 022 && : >>"$2") || return 1 ;;&
    File*) what=file; [ -f "$2" ] ;;
    Socket) what="socket file"; [ -S "$2" ] ;;
    CharDevice) what="character device"; [ -c "$2" ] ;;
    BlockDevice) what="block device"; [ -b "$2" ] ;;
  esac && return 0
  echo "mobius: volume $3: hostPath type check failed: $2 is not a $what" >&2
  return 1
}"""


def node_setup(plan: VolumePlan) -> list[str]:
    """Job script lines, run before any container: hostPath checks and missing subPath folders
    (both belong to the node running the pod). Each failure ends the job with exit 125."""
    lines: list[str] = []
    checks = [v for v in plan.volumes if isinstance(v, HostPathVolume) and v.type]
    if checks:
        lines += _HOST_PATH_CHECK.splitlines()
        lines += [f"host_path {v.type} {quote(v.path)} {quote(v.name)} || exit 125" for v in checks]
    if plan.sub_paths:
        lines.append(
            "# subPaths missing in their volume are created as folders, as the kubelet does."
        )
        lines += [
            f"[ -e {quote(s)} ] || mkdir -p -- {quote(s)} || exit 125" for s in plan.sub_paths
        ]
    return lines
