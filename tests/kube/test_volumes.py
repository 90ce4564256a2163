"""Volumes on disk: the atomic ``..data`` swap, modes, token renewal times, and the update pass
(downward API values follow the pod; tokens on disk are reused until 80% of their lifetime)."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mobius.kube.client import KubeClient
from mobius.kube.credentials import Credentials
from mobius.kube.volumes import DATA, VolumeUpdater, refresh_at, write_files, write_volumes
from mobius.models import Pod
from mobius.pods.env import PodRefs
from mobius.pods.volumes import TokenSpec, plan_volumes
from mobius.state import PodPaths


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def make_pod(volumes: list[dict[str, Any]], **meta: Any) -> Pod:
    raw = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", **meta},
        "spec": {
            "volumes": volumes,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }
    return msgspec.convert(raw, Pod)


def test_volumes_are_written_with_kubernetes_modes_in_a_private_folder(tmp_path: Path) -> None:
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir()
    pod = make_pod(
        [
            {"name": "scratch", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": "/srv"}},
            {
                "name": "creds",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"path": "token"}},
                        {
                            "secret": {
                                "name": "s",
                                "items": [{"key": "k", "path": "deep/k", "mode": 0o400}],
                            }
                        },
                    ]
                },
            },
        ]
    )
    plan = plan_volumes(pod, refs=PodRefs(secrets={"s": {"k": b"v"}}), pod_dir=str(pod_dir))
    write_volumes(pod_dir, plan, {TokenSpec("default"): "tok"})
    root = pod_dir / "volumes"
    assert mode_of(root) == 0o700
    assert mode_of(root / "scratch") == 0o777
    assert sorted(os.listdir(root)) == ["creds", "scratch"]
    creds = root / "creds"
    assert (creds / "token").read_text() == "tok"
    assert (creds / "deep" / "k").read_text() == "v"
    assert mode_of(creds / "token") == 0o644
    assert mode_of(creds / "deep" / "k") == 0o400
    assert os.readlink(creds / "token") == f"{DATA}/token"
    assert os.readlink(creds / "deep") == f"{DATA}/deep"
    hidden = os.readlink(creds / DATA)
    assert hidden.startswith("..")
    assert mode_of(creds / hidden) == 0o755
    assert sorted(os.listdir(creds)) == sorted([DATA, hidden, "deep", "token"])
    write_volumes(pod_dir, plan, {TokenSpec("default"): "tok"})  # again: nothing changes
    assert os.readlink(creds / DATA) == hidden


def test_updates_swap_the_data_link_at_once(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    assert write_files(vol, [("a", 0o644, b"1"), ("b", 0o600, b"2")])
    first = os.readlink(vol / DATA)
    assert not write_files(vol, [("b", 0o600, b"2"), ("a", 0o644, b"1")])  # same content
    assert write_files(vol, [("a", 0o644, b"one"), ("c/d", 0o644, b"3")])
    second = os.readlink(vol / DATA)
    assert second != first
    assert sorted(os.listdir(vol)) == sorted(
        [DATA, second, "a", "c"]
    )  # b's link and the old data gone
    assert (vol / "a").read_text() == "one"
    assert (vol / "c" / "d").read_text() == "3"
    assert write_files(vol, [])  # e.g. an optional ConfigMap deleted before the pod started
    assert sorted(os.listdir(vol)) == sorted([DATA, os.readlink(vol / DATA)])


def test_a_leftover_of_an_interrupted_write_is_replaced(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    write_files(vol, [("a", 0o644, b"1")])
    name = os.readlink(vol / DATA)
    write_files(vol, [("a", 0o644, b"2")])
    (vol / name).mkdir()  # a half-written folder of the first content
    (vol / name / "junk").write_text("x")
    assert write_files(vol, [("a", 0o644, b"1")])
    assert os.readlink(vol / DATA) == name
    assert sorted(os.listdir(vol / name)) == ["a"]


def test_tokens_are_renewed_after_80_percent_of_their_lifetime() -> None:
    assert refresh_at(jwt({"iat": 1000, "exp": 2000}), fallback_seconds=600, now=0) == 1800
    # A 3607 s token the API server extended to a year: renewed as if it lived 3607 s.
    extended = jwt({"iat": 1000, "exp": 1000 + 31536000, "kubernetes.io": {"warnafter": 4607}})
    assert refresh_at(extended, fallback_seconds=600, now=0) == pytest.approx(1000 + 0.8 * 3607)
    assert refresh_at("not a token", fallback_seconds=600, now=50) == 50 + 480
    assert refresh_at("not a token", fallback_seconds=0, now=50) == 50  # due now


@pytest.fixture
async def kube() -> Any:
    # Nothing listens there: a pass that needs no API call must make none.
    async with KubeClient(Credentials(server="https://127.0.0.1:9"), timeout=2.0) as client:
        yield client


async def test_downward_api_files_follow_the_pods_labels(tmp_path: Path, kube: KubeClient) -> None:
    paths = PodPaths(tmp_path)
    volume = {
        "name": "info",
        "downwardAPI": {
            "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
        },
    }
    pod = make_pod([volume], labels={"v": "1"})
    pod_dir = paths.pod_dir("u-1")
    pod_dir.mkdir(parents=True)
    write_volumes(pod_dir, plan_volumes(pod, refs=PodRefs(), pod_dir=str(pod_dir)), {})
    labels = pod_dir / "volumes" / "info" / "labels"
    assert labels.read_text() == 'v="1"'
    updater = VolumeUpdater(kube, paths=paths, node_name="mobius")
    assert await updater.update([pod]) == 0  # what the disk shows already
    relabelled = make_pod([volume], labels={"v": "2"})
    assert await updater.update([relabelled]) == 1
    assert labels.read_text() == 'v="2"'
    assert await updater.update([relabelled]) == 0
    assert kube.request_count == 0


async def test_a_removed_pod_folder_is_never_recreated(tmp_path: Path, kube: KubeClient) -> None:
    volume = {
        "name": "info",
        "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]},
    }
    updater = VolumeUpdater(kube, paths=PodPaths(tmp_path), node_name="mobius")
    assert await updater.update([make_pod([volume])]) == 0
    assert not (tmp_path / "pods").exists()


async def test_tokens_on_disk_are_used_until_due(tmp_path: Path, kube: KubeClient) -> None:
    paths = PodPaths(tmp_path)
    volume = {"name": "sa", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    pod = make_pod([volume])
    pod_dir = paths.pod_dir("u-1")
    pod_dir.mkdir(parents=True)
    now = time.time()
    token = jwt({"iat": int(now), "exp": int(now) + 3600})
    plan = plan_volumes(pod, refs=PodRefs(), pod_dir=str(pod_dir))
    write_volumes(pod_dir, plan, {TokenSpec("default"): token})
    updater = VolumeUpdater(kube, paths=paths, node_name="mobius")
    assert await updater.update([pod], now=now + 60) == 0
    assert kube.request_count == 0  # read back from disk, not yet due
    # Due (80% of 3600 s): a TokenRequest is made; here it cannot reach a server, so the
    # volume keeps its token and the pass goes on.
    assert await updater.update([pod], now=now + 2900) == 0
    assert kube.request_count == 1
    assert (pod_dir / "volumes" / "sa" / "token").read_text() == token
