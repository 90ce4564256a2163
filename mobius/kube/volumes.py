"""Volumes on disk: write what a pod's volumes hold under its folder, and keep it current.

:mod:`mobius.pods.volumes` decides what each volume holds; this module does the I/O:

* Service-account tokens come from the TokenRequest API (``POST .../serviceaccounts/<name>/
  token``), bound to the pod, with the projection's audience (none: the API server's own) and
  ``expirationSeconds``.
* Folders are private to the job's user: the pod's folder and its ``volumes/`` are 0700, so the
  volume folders inside may carry Kubernetes' own modes (emptyDir 0777, others 0755, files as
  their ``mode`` says): a container running as another user (``runAsUser``) reads through its
  bind mount, where only the volume's own modes count.
* configMap, secret, downwardAPI and projected volumes are written as the kubelet's
  ``AtomicWriter`` does: the files go to a new hidden folder, then the ``..data`` symlink is
  swapped to it with one rename, so a container never sees half an update; the visible names
  are symlinks through ``..data``. The hidden folder is named by a hash of the content, so an
  unchanged volume costs one ``readlink``.
* :func:`serve_volume_updates` keeps the volumes of submitted pods current, as the kubelet's
  sync does: every ``period`` seconds ONE list of ConfigMaps (and of Secrets) per namespace that
  pods refer to (served from the API server's watch cache), labels and annotations from the pod
  watch, and tokens renewed once 80% of their lifetime has passed (read from the token's own
  ``iat``/``exp`` claims, so a restarted kubelet renews only what is due). A volume whose
  ConfigMap or Secret has gone keeps its last content, as in Kubernetes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import msgspec
import trio

from mobius.errors import (
    ApiError,
    ApiUnreachable,
    InvalidPodSpec,
    MissingReference,
    NotFound,
    ParseError,
)
from mobius.kube.client import KubeClient
from mobius.kube.refs import decode_binary_data, decode_secret
from mobius.models import Pod
from mobius.models.core import ConfigMapList, Node, SecretList, TokenRequest, Volume
from mobius.pods.env import PodRefs
from mobius.pods.volumes import (
    VOLUMES_DIR,
    EmptyDirVolume,
    FilesVolume,
    TokenSpec,
    VolumePlan,
    files_volume,
    volume_needs,
)
from mobius.state import JobTable, PodPaths, PodStore

log = logging.getLogger(__name__)

__all__ = [
    "VolumeUpdater",
    "refresh_at",
    "request_token",
    "request_tokens",
    "serve_volume_updates",
    "write_files",
    "write_volumes",
]

_token_decoder = msgspec.json.Decoder(TokenRequest)
REFRESH_FRACTION = 0.8  # renew a token once this much of its lifetime has passed (the kubelet's)
DATA = "..data"
_DATA_TMP = "..data_tmp"
Files = Sequence[tuple[str, int, bytes]]  # (path in the volume, mode, content)


# --- tokens -------------------------------------------------------------------------------------


async def request_token(kube: KubeClient, pod: Pod, spec: TokenSpec) -> str:
    """A new token of ``spec.service_account`` bound to ``pod``; MissingReference when the
    service account does not exist."""
    ns, account = pod.metadata.namespace, spec.service_account
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [spec.audience] if spec.audience else [],
            "expirationSeconds": spec.expiration_seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod.metadata.name,
                "uid": pod.metadata.uid,
            },
        },
    }
    path = "/api/v1/namespaces/{}/serviceaccounts/{}/token".format(
        quote(ns, safe=""), quote(account, safe="")
    )
    try:
        raw = await kube.create(path, body)
    except NotFound as exc:
        raise MissingReference(
            "spec.serviceAccountName",
            f"failed to fetch token: serviceaccount {ns}/{account}: {exc.message}",
        ) from exc
    answer = _token_decoder.decode(raw)
    if not answer.status.token:
        raise ParseError(f"TokenRequest for {ns}/{account}", "(no token in the answer)")
    return answer.status.token


async def request_tokens(kube: KubeClient, pod: Pod, plan: VolumePlan) -> dict[TokenSpec, str]:
    """One new token per distinct token the pod's volumes hold."""
    return {spec: await request_token(kube, pod, spec) for spec in sorted(plan.tokens(), key=repr)}


def refresh_at(token: str, *, fallback_seconds: int, now: float) -> float:
    """When to renew ``token``: after 80% of its lifetime, from its ``iat`` and its ``exp``
    (or ``kubernetes.io.warnafter``, the lifetime asked for when the API server extended it).
    For a token whose claims cannot be read: 80% of ``fallback_seconds`` from ``now``."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        issued = float(claims["iat"])
        end = float(claims.get("kubernetes.io", {}).get("warnafter") or claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error, AttributeError):
        return now + REFRESH_FRACTION * fallback_seconds
    return issued + REFRESH_FRACTION * (end - issued)


# --- writing ------------------------------------------------------------------------------------


def _fingerprint(files: Files) -> str:
    digest = hashlib.sha256()
    for path, mode, data in sorted(files):
        digest.update(f"{path}\0{mode:o}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:20]


def _write_file(path: Path, mode: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        os.fchmod(f.fileno(), mode)


def write_files(vol_dir: Path, files: Files) -> bool:
    """Make ``vol_dir`` show exactly ``files``, atomically (the kubelet's ``AtomicWriter``).

    The content goes to ``..<hash>/``; ``..data`` is swapped to it with one rename; each
    top-level name is a symlink through ``..data``; older hidden folders are removed. Returns
    False when the volume already shows this content (nothing written). ``vol_dir`` must exist.
    """
    name = ".." + _fingerprint(files)
    data_link = vol_dir / DATA
    try:
        current: str | None = os.readlink(data_link)
    except FileNotFoundError:
        current = None
    if current == name:
        return False
    new = vol_dir / name
    if new.exists():  # left by an interrupted write
        shutil.rmtree(new)
    new.mkdir(mode=0o755)
    os.chmod(new, 0o755)
    for path, mode, content in files:
        target = new / path
        for parent in reversed(target.relative_to(new).parents[:-1]):
            folder = new / parent
            if not folder.is_dir():
                folder.mkdir(mode=0o755)
                os.chmod(folder, 0o755)
        _write_file(target, mode, content)
    tmp = vol_dir / _DATA_TMP
    tmp.unlink(missing_ok=True)
    os.symlink(name, tmp)
    os.replace(tmp, data_link)
    tops = {path.split("/", 1)[0] for path, _, _ in files}
    for top in sorted(tops):
        link = vol_dir / top
        if not link.is_symlink() and not link.exists():
            os.symlink(f"{DATA}/{top}", link)
    for entry in os.scandir(vol_dir):
        if entry.name.startswith(".."):
            if entry.name not in (DATA, name) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.is_symlink() and entry.name not in tops:
            os.unlink(entry.path)
    return True


def _files(volume: FilesVolume, tokens: dict[TokenSpec, str]) -> list[tuple[str, int, bytes]]:
    return [
        (f.path, f.mode, tokens[f.token].encode() if f.token is not None else f.data)
        for f in volume.files
    ]


def write_volumes(pod_dir: Path, plan: VolumePlan, tokens: dict[TokenSpec, str]) -> None:
    """Create the pod's volumes under ``pod_dir/volumes`` (before the job is submitted)."""
    root = pod_dir / VOLUMES_DIR
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    for volume in plan.volumes:
        if isinstance(volume, EmptyDirVolume):
            folder = root / volume.name
            folder.mkdir(exist_ok=True)
            os.chmod(folder, 0o777)  # as the kubelet makes emptyDirs: any container user writes
        elif isinstance(volume, FilesVolume):
            folder = root / volume.name
            folder.mkdir(mode=0o755, exist_ok=True)
            os.chmod(folder, 0o755)
            write_files(folder, _files(volume, tokens))


# --- keeping volumes current --------------------------------------------------------------------


class VolumeUpdater:
    """What the update task remembers between passes: the content each volume shows (by hash)
    and each token with its renewal time. Keyed by pod UID; :meth:`forget` drops gone pods."""

    def __init__(self, kube: KubeClient, *, paths: PodPaths, node_name: str) -> None:
        self.kube = kube
        self.paths = paths
        self.node_name = node_name
        self._shown: dict[tuple[str, str], str] = {}  # (uid, volume) -> fingerprint
        self._tokens: dict[tuple[str, TokenSpec], tuple[str, float]] = {}

    def __repr__(self) -> str:
        pods = len({uid for uid, _ in self._shown})
        return f"<VolumeUpdater {pods} pods {len(self._tokens)} tokens>"

    def forget(self, keep: set[str]) -> None:
        self._shown = {k: v for k, v in self._shown.items() if k[0] in keep}
        self._tokens = {k: v for k, v in self._tokens.items() if k[0] in keep}

    async def _refs(self, pods: Iterable[Pod]) -> dict[str, PodRefs]:
        """PodRefs per namespace: one LIST of ConfigMaps and one of Secrets per namespace that
        needs them (from the watch cache: resourceVersion=0), the node if asked for."""
        wanted: dict[str, tuple[bool, bool]] = {}
        node = False
        for pod in pods:
            need = volume_needs(pod)
            cms, secrets = wanted.get(pod.metadata.namespace, (False, False))
            wanted[pod.metadata.namespace] = (
                cms or bool(need.config_maps),
                secrets or bool(need.secrets),
            )
            node = node or need.node
        allocatable: dict[str, str] = {}
        if node and self.node_name:
            got = await self.kube.get(f"/api/v1/nodes/{quote(self.node_name, safe='')}", Node)
            allocatable = got.status.allocatable
        out: dict[str, PodRefs] = {}
        for ns, (cms, secrets) in sorted(wanted.items()):
            base = f"/api/v1/namespaces/{quote(ns, safe='')}"
            text: dict[str, dict[str, str]] = {}
            binary: dict[str, dict[str, bytes]] = {}
            decoded: dict[str, dict[str, bytes]] = {}
            if cms:
                listed = await self.kube.get(
                    f"{base}/configmaps", ConfigMapList, resourceVersion="0"
                )
                for cm in listed.items:
                    text[cm.metadata.name] = cm.data
                    if cm.binary_data:
                        binary[cm.metadata.name] = decode_binary_data(cm)
            if secrets:
                slist = await self.kube.get(f"{base}/secrets", SecretList, resourceVersion="0")
                for secret in slist.items:
                    try:
                        decoded[secret.metadata.name] = decode_secret(secret)
                    except ParseError as exc:
                        log.warning("skipping a Secret: %s", exc)
            out[ns] = PodRefs(
                config_maps=text,
                config_map_binary=binary,
                secrets=decoded,
                node_allocatable=allocatable,
            )
        return out

    async def _token(self, pod: Pod, spec: TokenSpec, on_disk: str | None, now: float) -> str:
        key = (pod.metadata.uid, spec)
        cached = self._tokens.get(key)
        if cached is None and on_disk:
            due = refresh_at(on_disk, fallback_seconds=0, now=now)
            cached = (on_disk, due)
        if cached is not None and now < cached[1]:
            self._tokens[key] = cached
            return cached[0]
        token = await request_token(self.kube, pod, spec)
        self._tokens[key] = (
            token,
            refresh_at(token, fallback_seconds=spec.expiration_seconds, now=now),
        )
        log.info("renewed a service-account token of pod %s", pod.key)
        return token

    async def update(self, pods: Sequence[Pod], *, now: float | None = None) -> int:
        """One pass over ``pods`` (submitted, not terminal): rewrite the volumes whose content
        changed; the number rewritten. Errors of one pod are logged and do not stop the pass."""
        now = time.time() if now is None else now
        pods = [p for p in pods if any(_updatable(v) for v in p.spec.volumes)]
        if not pods:
            return 0
        refs = await self._refs(pods)
        written = 0
        for pod in pods:
            try:
                written += await self._update_pod(pod, refs[pod.metadata.namespace], now)
            except (ApiError, ApiUnreachable, InvalidPodSpec, OSError) as exc:
                log.warning("could not update the volumes of pod %s: %s", pod.key, exc)
        return written

    async def _update_pod(self, pod: Pod, refs: PodRefs, now: float) -> int:
        uid = pod.metadata.uid
        root = self.paths.pod_dir(uid) / VOLUMES_DIR
        volumes: list[FilesVolume] = []
        for i, v in enumerate(pod.spec.volumes):
            if not _updatable(v):
                continue
            try:
                volumes.append(files_volume(pod, i, refs=refs))
            except InvalidPodSpec as exc:  # e.g. the ConfigMap is gone: keep what is shown
                log.debug("volume %s of pod %s not updated: %s", v.name, pod.key, exc)
        specs = {(v.name, f.path): f.token for v in volumes for f in v.files if f.token is not None}
        unknown = [k for k, spec in specs.items() if (uid, spec) not in self._tokens]

        def read_tokens() -> dict[tuple[str, str], str]:
            found = {}
            for name, path in unknown:
                try:
                    found[(name, path)] = (root / name / DATA / path).read_text()
                except (OSError, UnicodeDecodeError):
                    continue
            return found

        on_disk = await trio.to_thread.run_sync(read_tokens) if unknown else {}
        tokens: dict[TokenSpec, str] = {}
        for key, spec in specs.items():
            if spec not in tokens:
                tokens[spec] = await self._token(pod, spec, on_disk.get(key), now)
        changed: list[tuple[str, list[tuple[str, int, bytes]], str]] = []
        for vol in volumes:
            files = _files(vol, tokens)
            fp = _fingerprint(files)
            if self._shown.get((uid, vol.name)) != fp:
                changed.append((vol.name, files, fp))
        if not changed:
            return 0

        def write() -> int:
            count = 0
            for name, files, _ in changed:
                folder = root / name
                if folder.is_dir():  # never recreate the folder of a pod being removed
                    count += write_files(folder, files)
            return count

        written = await trio.to_thread.run_sync(write)
        for name, _, fp in changed:
            self._shown[(uid, name)] = fp
        if written:
            log.info("updated %d volume(s) of pod %s", written, pod.key)
        return written


def _updatable(v: Volume) -> bool:
    return any(s is not None for s in (v.config_map, v.secret, v.downward_api, v.projected))


def _submitted(pod: Pod, jobs: JobTable) -> bool:
    job = jobs.get(pod.metadata.uid)
    return (
        job is not None
        and bool(job.job_id)
        and not job.error
        and pod.status.phase not in ("Succeeded", "Failed")
        and not pod.metadata.deletion_timestamp
    )


async def serve_volume_updates(
    kube: KubeClient,
    *,
    store: PodStore,
    jobs: JobTable,
    paths: PodPaths,
    node_name: str,
    period: float = 30.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Every ``period`` seconds, bring the volumes of submitted pods up to date (see the module
    notes): ConfigMap and Secret contents, downward API values, service-account tokens."""
    updater = VolumeUpdater(kube, paths=paths, node_name=node_name)
    task_status.started()
    await store.synced.wait()
    while True:
        await trio.sleep(period)
        try:
            await updater.update([p for p in store if _submitted(p, jobs)])
        except* (ApiError, ApiUnreachable) as group:
            log.warning("volume update pass failed (next in %.0fs): %s", period, group.exceptions)
        updater.forget(store.uids())
