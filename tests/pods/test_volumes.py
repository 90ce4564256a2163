"""The volume planner: each volume type as the kubelet makes it, items and modes, subPath and
subPathExpr, hostPath type checks (run for real under bash), and refusals that name the volume."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mobius.errors import InvalidPodSpec, MissingReference
from mobius.models import Pod
from mobius.models.core import PersistentVolume, PersistentVolumeClaim
from mobius.pods.env import PodRefs
from mobius.pods.volumes import (
    EmptyDirVolume,
    FilesVolume,
    HostPathVolume,
    TokenSpec,
    VolumeFile,
    VolumePlan,
    node_setup,
    plan_volumes,
    pod_needs,
)
from mobius.runtime.base import Mount

POD_DIR = "/state/pods/u-1"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

# What the API server adds to every pod whose service account token is automounted.
KUBE_API_ACCESS = {
    "name": "kube-api-access-x7k2p",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    },
}


def make_pod(
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]] | None = None,
    *,
    container: dict[str, Any] | None = None,
    **spec: Any,
) -> Pod:
    raw = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "u-1",
            "labels": {"app": "web", "tier": 'fr"ont\n'},
            "annotations": {"owner": "me"},
        },
        "spec": {
            "serviceAccountName": "robot",
            "restartPolicy": "Never",
            "volumes": volumes,
            "containers": [
                {"name": "c", "image": "busybox", "volumeMounts": mounts or [], **(container or {})}
            ],
            **spec,
        },
    }
    return msgspec.convert(raw, Pod)


def plan(pod: Pod, refs: PodRefs | None = None) -> VolumePlan:
    return plan_volumes(pod, refs=refs or PodRefs(), pod_dir=POD_DIR)


def files_of(p: VolumePlan, name: str) -> dict[str, VolumeFile]:
    (vol,) = [v for v in p.volumes if v.name == name]
    assert isinstance(vol, FilesVolume)
    return {f.path: f for f in vol.files}


def refused(pod: Pod, refs: PodRefs | None = None) -> InvalidPodSpec:
    with pytest.raises(InvalidPodSpec) as info:
        plan(pod, refs)
    return info.value


# --- the service-account volume every pod gets ------------------------------------------------


def test_the_api_servers_service_account_volume() -> None:
    pod = make_pod(
        [KUBE_API_ACCESS],
        [{"name": "kube-api-access-x7k2p", "mountPath": SA_MOUNT, "readOnly": True}],
    )
    refs = PodRefs(config_maps={"kube-root-ca.crt": {"ca.crt": "PEM"}})
    p = plan(pod, refs)
    files = files_of(p, "kube-api-access-x7k2p")
    assert files["token"].token == TokenSpec("robot", audience="", expiration_seconds=3607)
    assert files["ca.crt"].data == b"PEM"
    assert files["namespace"].data == b"ns"
    assert {f.mode for f in files.values()} == {0o644}
    assert p.tokens() == {TokenSpec("robot", expiration_seconds=3607)}
    assert p.mounts["c"] == (
        Mount(
            source=f"{POD_DIR}/volumes/kube-api-access-x7k2p",
            target=SA_MOUNT,
            read_only=True,
            field="spec.containers[0].volumeMounts[0]",
        ),
    )
    assert pod_needs(pod).config_maps == {"kube-root-ca.crt"}
    assert "PEM" not in repr(files["ca.crt"])


def test_the_ca_config_map_not_yet_published_makes_the_pod_wait() -> None:
    pod = make_pod([KUBE_API_ACCESS])
    with pytest.raises(MissingReference) as info:
        plan(pod)
    assert info.value.field == "spec.volumes[0].projected.sources[1].configMap"
    assert info.value.why == (
        'MountVolume.SetUp failed for volume "kube-api-access-x7k2p" : '
        'configmap "kube-root-ca.crt" not found'
    )


def test_token_audience_expiry_and_default_service_account() -> None:
    volume = {
        "name": "vault",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "t/vault", "audience": "vault"}},
                {"serviceAccountToken": {"path": "t/api", "expirationSeconds": 7200}},
            ]
        },
    }
    p = plan(make_pod([volume], serviceAccountName=None))
    files = files_of(p, "vault")
    assert files["t/vault"].token == TokenSpec("default", audience="vault", expiration_seconds=3600)
    assert files["t/api"].token == TokenSpec("default", expiration_seconds=7200)
    short = {
        "name": "s",
        "projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 60}}]},
    }
    assert refused(make_pod([short])).field.endswith("serviceAccountToken.expirationSeconds")


# --- configMap and secret -----------------------------------------------------------------------


def test_config_map_every_key_or_items_with_modes() -> None:
    refs = PodRefs(
        config_maps={"cfg": {"a": "1", "b": "2"}},
        config_map_binary={"cfg": {"bin": b"\x00\xff"}},
    )
    every = plan(make_pod([{"name": "v", "configMap": {"name": "cfg"}}]), refs)
    assert {p: (f.mode, f.data) for p, f in files_of(every, "v").items()} == {
        "a": (0o644, b"1"),
        "b": (0o644, b"2"),
        "bin": (0o644, b"\x00\xff"),
    }
    items = {
        "name": "v",
        "configMap": {
            "name": "cfg",
            "defaultMode": 0o440,
            "items": [{"key": "a", "path": "conf/a.ini"}, {"key": "b", "path": "b", "mode": 0o600}],
        },
    }
    picked = files_of(plan(make_pod([items]), refs), "v")
    assert {p: (f.mode, f.data) for p, f in picked.items()} == {
        "conf/a.ini": (0o440, b"1"),
        "b": (0o600, b"2"),
    }


def test_secret_files_are_private_unless_a_mode_says() -> None:
    refs = PodRefs(secrets={"s": {"password": b"hunter2", "user": b"me"}})
    default = files_of(plan(make_pod([{"name": "v", "secret": {"secretName": "s"}}]), refs), "v")
    assert {f.mode for f in default.values()} == {0o600}
    stored = {"name": "v", "secret": {"secretName": "s", "defaultMode": 420}}  # as the API server
    assert {f.mode for f in files_of(plan(make_pod([stored]), refs), "v").values()} == {0o644}
    item = {
        "name": "v",
        "secret": {"secretName": "s", "items": [{"key": "user", "path": "u", "mode": 0o400}]},
    }
    assert {p: f.mode for p, f in files_of(plan(make_pod([item]), refs), "v").items()} == {
        "u": 0o400
    }
    assert "hunter2" not in repr(plan(make_pod([stored]), refs))


@pytest.mark.parametrize(
    ("volume", "field", "why"),
    [
        (
            {"name": "v", "configMap": {"name": "gone"}},
            "spec.volumes[0].configMap",
            'MountVolume.SetUp failed for volume "v" : configmap "gone" not found',
        ),
        (
            {"name": "v", "secret": {"secretName": "gone"}},
            "spec.volumes[0].secret",
            'MountVolume.SetUp failed for volume "v" : secret "gone" not found',
        ),
        (
            {"name": "v", "configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}},
            "spec.volumes[0].configMap.items[0]",
            "configmap references non-existent config key: nope",
        ),
        (
            {"name": "v", "secret": {"secretName": "s", "items": [{"key": "nope", "path": "x"}]}},
            "spec.volumes[0].secret.items[0]",
            "references non-existent secret key: nope",
        ),
    ],
)
def test_missing_objects_and_keys_make_the_pod_wait(
    volume: dict[str, Any], field: str, why: str
) -> None:
    refs = PodRefs(config_maps={"cfg": {"a": "1"}}, secrets={"s": {"a": b"1"}})
    with pytest.raises(MissingReference) as info:
        plan(make_pod([volume]), refs)
    assert (info.value.field, info.value.why) == (field, why)


def test_optional_objects_and_keys_are_left_out() -> None:
    refs = PodRefs(config_maps={"cfg": {"a": "1"}})
    volumes = [
        {"name": "gone", "configMap": {"name": "gone", "optional": True}},
        {"name": "s", "secret": {"secretName": "gone", "optional": True}},
        {
            "name": "part",
            "configMap": {
                "name": "cfg",
                "optional": True,
                "items": [{"key": "a", "path": "a"}, {"key": "nope", "path": "b"}],
            },
        },
        {
            "name": "proj",
            "projected": {"sources": [{"secret": {"name": "gone", "optional": True}}]},
        },
    ]
    p = plan(make_pod(volumes), refs)
    assert files_of(p, "gone") == {}
    assert files_of(p, "s") == {}
    assert list(files_of(p, "part")) == ["a"]
    assert files_of(p, "proj") == {}


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x", "a/../../x", "..data", "..", ".", "", "a/\x00"]
)
def test_item_paths_stay_inside_the_volume(path: str) -> None:
    refs = PodRefs(config_maps={"cfg": {"a": "1"}})
    volume = {"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a", "path": path}]}}
    err = refused(make_pod([volume]), refs)
    assert err.field == "spec.volumes[0].configMap.items[0].path"


@given(path=st.text(max_size=30))
def test_no_item_path_escapes_the_volume(path: str) -> None:
    refs = PodRefs(config_maps={"cfg": {"a": "1"}})
    volume = {"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a", "path": path}]}}
    try:
        p = plan(make_pod([volume]), refs)
    except InvalidPodSpec:
        return
    (written,) = files_of(p, "v")
    assert not written.startswith(("/", ".."))
    assert ".." not in written.split("/")
    assert os.path.normpath(f"/vol/{written}").startswith("/vol/")


def test_conflicting_paths_and_bad_modes_are_refused() -> None:
    refs = PodRefs(config_maps={"cfg": {"a": "1", "b": "2"}})
    twice = {
        "name": "v",
        "projected": {
            "sources": [
                {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "x"}]}},
                {"configMap": {"name": "cfg", "items": [{"key": "b", "path": "x"}]}},
            ]
        },
    }
    assert "conflicting duplicate paths: x" in str(refused(make_pod([twice]), refs))
    nested = {
        "name": "v",
        "configMap": {
            "name": "cfg",
            "items": [{"key": "a", "path": "x"}, {"key": "b", "path": "x/y"}],
        },
    }
    assert "x is both a file and a folder" in str(refused(make_pod([nested]), refs))
    mode = {"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o1777}}
    assert refused(make_pod([mode]), refs).field == "spec.volumes[0].configMap.defaultMode"


# --- downwardAPI --------------------------------------------------------------------------------


def test_downward_api_files() -> None:
    items = [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}, "mode": 0o400},
        {
            "path": "mem",
            "resourceFieldRef": {
                "containerName": "c",
                "resource": "limits.memory",
                "divisor": "1Mi",
            },
        },
    ]
    pod = make_pod(
        [{"name": "info", "downwardAPI": {"items": items}}],
        container={"resources": {"limits": {"memory": "64Mi"}}},
    )
    files = files_of(plan(pod), "info")
    assert {p: f.data.decode() for p, f in files.items()} == {
        "name": "web",
        "uid": "u-1",
        # fieldpath.FormatMap: key="value" lines in key order, values quoted as Go's %q does.
        "labels": 'app="web"\ntier="fr\\"ont\\n"',
        "annotations": 'owner="me"',
        "app": "web",
        "mem": "64",
    }
    assert files["app"].mode == 0o400
    assert files["name"].mode == 0o644
    assert pod_needs(pod).node  # limits default to the node's allocatable


def test_downward_api_refuses_fields_volumes_cannot_show() -> None:
    items = [{"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}}]
    err = refused(make_pod([{"name": "info", "downwardAPI": {"items": items}}]))
    assert err.field == "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath"
    no_container = [{"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}]
    err = refused(make_pod([{"name": "info", "downwardAPI": {"items": no_container}}]))
    assert err.field.endswith("resourceFieldRef.containerName")


# --- emptyDir, hostPath, mounts -----------------------------------------------------------------


def test_empty_dir_is_a_folder_of_the_pod_shared_by_containers() -> None:
    pod = make_pod(
        [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
        [{"name": "scratch", "mountPath": "/scratch"}],
        initContainers=[
            {
                "name": "init",
                "image": "busybox",
                "volumeMounts": [{"name": "scratch", "mountPath": "/data/", "readOnly": True}],
            }
        ],
    )
    p = plan(pod)
    assert p.volumes == (EmptyDirVolume("scratch", medium="Memory", size_limit="1Gi"),)
    source = f"{POD_DIR}/volumes/scratch"
    assert p.mounts["c"] == (
        Mount(source, "/scratch", read_only=False, field="spec.containers[0].volumeMounts[0]"),
    )
    assert p.mounts["init"] == (
        Mount(source, "/data", read_only=True, field="spec.initContainers[0].volumeMounts[0]"),
    )
    (warning,) = p.warnings
    assert warning.reason == "VolumeSettingsIgnored"
    assert "medium Memory" in warning.message
    assert "sizeLimit 1Gi" in warning.message


def test_mounts_sub_paths_and_their_order() -> None:
    env = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "EMPTY", "value": ""},
    ]
    pod = make_pod(
        [{"name": "data", "emptyDir": {}}, {"name": "host", "hostPath": {"path": "/srv/data/"}}],
        [
            {"name": "data", "mountPath": "/work/logs", "subPathExpr": "logs/$(POD)"},
            {"name": "data", "mountPath": "/work"},
            {"name": "host", "mountPath": "/host", "subPath": "a/b", "readOnly": True},
        ],
        container={"env": env},
    )
    p = plan(pod)
    assert [(m.source, m.target, m.read_only) for m in p.mounts["c"]] == [
        (f"{POD_DIR}/volumes/data", "/work", False),
        ("/srv/data/a/b", "/host", True),
        (f"{POD_DIR}/volumes/data/logs/web", "/work/logs", False),
    ]
    assert p.sub_paths == (f"{POD_DIR}/volumes/data/logs/web", "/srv/data/a/b")


@pytest.mark.parametrize(
    ("mount", "field", "why"),
    [
        ({"subPath": "/etc"}, "subPath", "must be relative"),
        ({"subPath": "a/../.."}, "subPath", "must not contain '..'"),
        ({"subPathExpr": "$(NOPE)/x"}, "subPathExpr", "missing value for NOPE"),
        ({"subPathExpr": "$(EMPTY)"}, "subPathExpr", "missing value for EMPTY"),
        ({"subPathExpr": "$(IP)"}, "subPathExpr", "pod's IP"),
        ({"subPath": "a", "subPathExpr": "b"}, "", "mutually exclusive"),
        ({"mountPath": "relative"}, "mountPath", "absolute"),
        ({"name": "nope"}, "name", "no volume named 'nope'"),
    ],
)
def test_bad_mounts_are_refused(mount: dict[str, Any], field: str, why: str) -> None:
    env = [
        {"name": "EMPTY", "value": ""},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    pod = make_pod(
        [{"name": "data", "emptyDir": {}}],
        [{"name": "data", "mountPath": "/d", **mount}],
        container={"env": env},
    )
    err = refused(pod)
    assert err.field == "spec.containers[0].volumeMounts[0]" + (f".{field}" if field else "")
    assert why in err.why


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        {"gcePersistentDisk": {"pdName": "disk"}},
        {"nfs": {"server": "nfs.example", "path": "/export"}},
        {"csi": {"driver": "x"}},
        {"scaleIO": {"gateway": "g"}},
    ],
)
def test_unsupported_volume_types_are_refused_by_name(source: dict[str, Any]) -> None:
    (kind,) = source
    pod = make_pod([{"name": "ok", "emptyDir": {}}, {"name": "data", **source}])
    err = refused(pod)
    assert err.field == f"spec.volumes[1].{kind}"
    assert f'volume "data" is of type {kind}, which Mobius does not support' in err.why
    assert "emptyDir, configMap, secret, downwardAPI, projected, hostPath" in err.why
    assert "persistentVolumeClaim" in err.why


def test_unknown_and_ambiguous_volumes_are_refused() -> None:
    raw = msgspec.json.encode({"spec": {"volumes": [{"name": "new", "someFutureType": {}}]}})
    pod = msgspec.json.decode(raw, type=Pod)  # decodes: the type is unknown, not an error
    assert "of a type Mobius does not know" in refused(pod).why
    both = make_pod([{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}])
    assert "sets emptyDir, hostPath" in refused(both).why
    bundle = {"name": "v", "projected": {"sources": [{"clusterTrustBundle": {"name": "b"}}]}}
    err = refused(make_pod([bundle]))
    assert err.field == "spec.volumes[0].projected.sources[0]"
    assert "clusterTrustBundle" in err.why


# --- hostPath checks, run for real ----------------------------------------------------------------


def run_checks(tmp_path: Path, volumes: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    p = plan(make_pod(volumes))
    script = tmp_path / "setup.sh"
    script.write_text("\n".join(["set -u", *node_setup(p), "echo ready"]) + "\n")
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)


def test_host_path_types_are_checked_as_the_kubelet_checks_them(tmp_path: Path) -> None:
    folder, afile = tmp_path / "dir", tmp_path / "file"
    folder.mkdir()
    afile.write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        good = [
            ("", tmp_path / "anything-goes"),
            ("Directory", folder),
            ("DirectoryOrCreate", tmp_path / "made" / "deep"),
            ("File", afile),
            ("FileOrCreate", tmp_path / "new-file"),
            ("Socket", tmp_path / "sock"),
            ("CharDevice", Path("/dev/null")),
        ]
        volumes = [
            {"name": f"v{i}", "hostPath": {"path": str(path), "type": kind}}
            for i, (kind, path) in enumerate(good)
        ]
        proc = run_checks(tmp_path, volumes)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "ready\n"
        assert (tmp_path / "made" / "deep").is_dir()
        made = tmp_path / "new-file"
        assert made.is_file()
        assert made.stat().st_size == 0
        assert stat.S_IMODE(made.stat().st_mode) == 0o644
        assert not (tmp_path / "anything-goes").exists()  # type "": no check, nothing made
        bad = [
            ("Directory", afile, "is not a directory"),
            ("Directory", tmp_path / "missing", "is not a directory"),
            ("DirectoryOrCreate", afile, "is not a directory"),
            ("File", folder, "is not a file"),
            ("FileOrCreate", folder, "is not a file"),
            ("Socket", afile, "is not a socket file"),
            ("CharDevice", afile, "is not a character device"),
            ("BlockDevice", Path("/dev/null"), "is not a block device"),
        ]
        for kind, path, why in bad:
            proc = run_checks(
                tmp_path, [{"name": "v", "hostPath": {"path": str(path), "type": kind}}]
            )
            assert proc.returncode == 125, (kind, path)
            assert proc.stdout == ""
            assert f"mobius: volume v: hostPath type check failed: {path} {why}" in proc.stderr
    finally:
        sock.close()


def test_host_path_refusals() -> None:
    assert refused(make_pod([{"name": "v", "hostPath": {"path": "rel"}}])).field == (
        "spec.volumes[0].hostPath.path"
    )
    assert refused(make_pod([{"name": "v", "hostPath": {"path": "/a/../b"}}])).field == (
        "spec.volumes[0].hostPath.path"
    )
    err = refused(make_pod([{"name": "v", "hostPath": {"path": "/x", "type": "Fifo"}}]))
    assert err.field == "spec.volumes[0].hostPath.type"
    assert plan(make_pod([{"name": "v", "hostPath": {"path": "/x/"}}])).volumes == (
        HostPathVolume("v", "/x", ""),
    )


def test_missing_sub_paths_are_created_on_the_node(tmp_path: Path) -> None:
    host = tmp_path / "host w'ith $(quotes)"
    host.mkdir()
    pod = make_pod(
        [{"name": "h", "hostPath": {"path": str(host), "type": "Directory"}}],
        [{"name": "h", "mountPath": "/h", "subPath": "a b/$(c)"}],
    )
    p = plan(pod)
    script = tmp_path / "setup.sh"
    script.write_text("\n".join(node_setup(p)) + "\n")
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (host / "a b" / "$(c)").is_dir()
    assert node_setup(plan(make_pod([{"name": "e", "emptyDir": {}}]))) == []


names = st.text(st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1, max_size=20)


@settings(max_examples=30, deadline=None)
@given(folder=names, sub=names)
def test_no_host_path_or_sub_path_changes_what_the_shell_runs(folder: str, sub: str) -> None:
    assume(folder not in (".", "..") and sub not in (".", ".."))
    with tempfile.TemporaryDirectory() as tmp:
        pod = make_pod(
            [{"name": "h", "hostPath": {"path": f"{tmp}/{folder}", "type": "DirectoryOrCreate"}}],
            [{"name": "h", "mountPath": "/h", "subPath": sub}],
        )
        script = Path(tmp) / ".setup.sh"
        script.write_text("\n".join(node_setup(plan(pod))) + "\n")
        proc = subprocess.run(["bash", str(script)], capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert sorted(os.listdir(tmp)) == sorted([".setup.sh", folder])
        assert os.listdir(Path(tmp) / folder) == [sub]


# --- persistentVolumeClaim ----------------------------------------------------------------------


def claim(name: str = "data", *, volume: str = "pv-1", phase: str = "Bound", **spec: Any) -> Any:
    return msgspec.convert(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"volumeName": volume if phase == "Bound" else "", **spec},
            "status": {"phase": phase},
        },
        PersistentVolumeClaim,
    )


def persistent_volume(name: str = "pv-1", *, bound_to: str = "data", **source: Any) -> Any:
    return msgspec.convert(
        {
            "metadata": {"name": name},
            "spec": {
                "claimRef": {"namespace": "ns", "name": bound_to, "uid": f"uid-{bound_to}"},
                **(source or {"hostPath": {"path": "/shared/data", "type": "Directory"}}),
            },
        },
        PersistentVolume,
    )


def claim_refs(*claims: Any, volumes: tuple[Any, ...] = ()) -> PodRefs:
    return PodRefs(
        claims={c.metadata.name: c for c in claims},
        persistent_volumes={v.metadata.name: v for v in volumes},
    )


CLAIM_VOLUME = {"name": "store", "persistentVolumeClaim": {"claimName": "data"}}


def test_a_claim_bound_to_a_host_path_volume_mounts_its_path() -> None:
    pod = make_pod(
        [CLAIM_VOLUME],
        [
            {"name": "store", "mountPath": "/data"},
            {"name": "store", "mountPath": "/logs", "subPath": "logs"},
        ],
    )
    assert pod_needs(pod).claims == frozenset({"data"})
    p = plan(pod, claim_refs(claim(), volumes=(persistent_volume(),)))
    assert p.volumes == (
        HostPathVolume("store", "/shared/data", "Directory", persistent_volume="pv-1"),
    )
    assert p.mounts["c"] == (
        Mount("/shared/data", "/data", field="spec.containers[0].volumeMounts[0]"),
        Mount("/shared/data/logs", "/logs", field="spec.containers[0].volumeMounts[1]"),
    )
    assert p.sub_paths == ("/shared/data/logs",)
    assert any("host_path Directory /shared/data store" in line for line in node_setup(p))
    assert not p.warnings


@pytest.mark.parametrize(
    ("volume", "access", "read_only"),
    [
        ({"readOnly": True}, ["ReadWriteMany"], True),
        ({}, ["ReadOnlyMany"], True),
        ({}, ["ReadWriteOnce", "ReadOnlyMany"], False),
        ({}, ["ReadWriteMany"], False),
    ],
)
def test_read_only_comes_from_the_volume_or_the_claim(
    volume: dict[str, Any], access: list[str], read_only: bool
) -> None:
    source = {"claimName": "data", **volume}
    pod = make_pod(
        [{"name": "store", "persistentVolumeClaim": source}], [{"name": "store", "mountPath": "/d"}]
    )
    p = plan(pod, claim_refs(claim(accessModes=access), volumes=(persistent_volume(),)))
    (mount,) = p.mounts["c"]
    assert mount.read_only is read_only


def test_a_local_volume_is_its_path_and_its_node_affinity_is_noted() -> None:
    local = persistent_volume(
        local={"path": "/scratch/shared/"},
        nodeAffinity={"required": {"nodeSelectorTerms": []}},
    )
    pod = make_pod([CLAIM_VOLUME], [{"name": "store", "mountPath": "/d"}])
    p = plan(pod, claim_refs(claim(), volumes=(local,)))
    assert p.volumes == (HostPathVolume("store", "/scratch/shared", persistent_volume="pv-1"),)
    (warning,) = p.warnings
    assert 'local PersistentVolume "pv-1": nodeAffinity is not checked' in warning.message


@pytest.mark.parametrize(
    ("refs", "why"),
    [
        (
            claim_refs(),
            "error processing PVC ns/data: failed to fetch PVC from API server: "
            'persistentvolumeclaims "data" not found',
        ),
        (
            claim_refs(claim(phase="Pending")),
            "error processing PVC ns/data: PVC is not bound (phase Pending)",
        ),
        (claim_refs(claim()), 'failed to fetch PV "pv-1" from API server'),
        (
            claim_refs(claim(), volumes=(persistent_volume(bound_to="other"),)),
            'PV "pv-1" is not bound to this claim yet',
        ),
    ],
)
def test_a_missing_or_unbound_claim_makes_the_pod_wait(refs: PodRefs, why: str) -> None:
    pod = make_pod([{"name": "ok", "emptyDir": {}}, CLAIM_VOLUME])
    with pytest.raises(MissingReference) as info:
        plan(pod, refs)
    assert info.value.field == "spec.volumes[1].persistentVolumeClaim"
    assert info.value.why.startswith(
        "Unable to attach or mount volumes: unmounted volumes=[store]: "
    )
    assert why in info.value.why


def test_an_nfs_volume_is_refused_with_what_to_do_instead() -> None:
    nfs = persistent_volume("pv-nfs", nfs={"server": "filer", "path": "/export/home"})
    err = refused(make_pod([CLAIM_VOLUME]), claim_refs(claim(volume="pv-nfs"), volumes=(nfs,)))
    assert err.field == "spec.volumes[0].persistentVolumeClaim.claimName"
    assert 'PersistentVolume "pv-nfs" (bound to claim "data") is an nfs volume' in err.why
    assert "filer:/export/home" in err.why
    assert "hostPath" in err.why
    assert not isinstance(err, MissingReference)  # the pod fails: waiting would not help


def test_other_persistent_volume_types_are_refused_by_name() -> None:
    csi = persistent_volume(csi={"driver": "x", "volumeHandle": "h"})
    err = refused(make_pod([CLAIM_VOLUME]), claim_refs(claim(), volumes=(csi,)))
    assert "is of type csi, which Mobius cannot mount" in err.why
    bad = persistent_volume(hostPath={"path": "relative"})
    assert (
        "must be an absolute path"
        in refused(make_pod([CLAIM_VOLUME]), claim_refs(claim(), volumes=(bad,))).why
    )
