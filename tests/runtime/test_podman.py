"""The Podman runtime's volume mounts: what ``podman run`` receives, recorded by a stand-in
binary while the generated job script runs under bash (podman itself runs in the e2e tests)."""

from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mobius.errors import InvalidPodSpec
from mobius.models import Pod
from mobius.pods.env import PodRefs
from mobius.pods.script import render_job
from mobius.runtime import Podman
from mobius.runtime.base import ContainerRun, Mount
from tests.pods.test_script import fake_podman, recorded_runs  # noqa: F401


def make_pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> Pod:
    raw = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "0000-uid"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": volumes,
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": mounts}],
        },
    }
    return msgspec.convert(raw, Pod)


def volume_flags(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]


def run(
    pod: Pod, tmp_path: Path, env: dict[str, str], refs: PodRefs | None = None
) -> list[list[str]]:
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir(exist_ok=True)
    job = render_job(pod, pod_dir=str(pod_dir), runtime=Podman(), refs=refs)
    script = tmp_path / "job.sh"
    script.write_text(job.script)
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return recorded_runs(Path(env["RECORD_DIR"]))


def test_volumes_become_volume_flags(
    tmp_path: Path,
    fake_podman: tuple[Path, dict[str, str]],  # noqa: F811
) -> None:
    _, env = fake_podman
    host = tmp_path / "host"
    host.mkdir()
    pod = make_pod(
        [
            {"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "host", "hostPath": {"path": str(host), "type": "Directory"}},
        ],
        [
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "host", "mountPath": "/scratch/host", "subPath": "sub", "readOnly": True},
        ],
    )
    (argv,) = run(pod, tmp_path, env, PodRefs(config_maps={"cfg": {"k": "v"}}))
    volumes = tmp_path / "pod" / "volumes"
    assert volume_flags(argv) == [  # shallow mount points first
        f"{volumes}/scratch:/scratch",
        f"{volumes}/cfg:/etc/app:ro",  # configMap volumes are always read-only
        f"{host}/sub:/scratch/host:ro",  # the subPath, made by the job on the node
    ]
    assert (host / "sub").is_dir()
    assert argv.index("--volume") < argv.index("busybox")


def test_paths_podman_cannot_carry_are_refused() -> None:
    for volume, mount in [
        ({"name": "h", "hostPath": {"path": "/a:b"}}, {"name": "h", "mountPath": "/h"}),
        ({"name": "h", "emptyDir": {}}, {"name": "h", "mountPath": "/x:y"}),
    ]:
        with pytest.raises(InvalidPodSpec) as info:
            render_job(make_pod([volume], [mount]), pod_dir="/p", runtime=Podman())
        assert info.value.field == "spec.containers[0].volumeMounts[0]"
        assert "':'" in info.value.why
        assert "podman --volume cannot carry" in info.value.why
    comma = ContainerRun(
        name="c",
        image="busybox",
        command=(),
        args=(),
        env=(),
        mounts=(Mount("/a,b", "/c,d", read_only=True),),
    )
    assert "--volume /a,b:/c,d:ro" in Podman().run_container(sandbox="s", container=comma)


paths = st.text(st.characters(codec="utf-8", exclude_characters="\x00:"), max_size=30)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=paths, target=paths, read_only=st.booleans())
def test_no_mount_path_changes_what_the_shell_runs(
    tmp_path: Path,
    fake_podman: tuple[Path, dict[str, str]],  # noqa: F811
    host: str,
    target: str,
    read_only: bool,
) -> None:
    record, env = fake_podman
    for f in record.iterdir():
        f.unlink()
    assume(".." not in host.split("/"))
    pod = make_pod(
        [{"name": "h", "hostPath": {"path": "/" + host}}],
        [{"name": "h", "mountPath": "/" + target, "readOnly": read_only}],
    )
    (argv,) = run(pod, tmp_path, env)
    src, dst = posixpath.normpath("/" + host), posixpath.normpath("/" + target)
    assert volume_flags(argv) == [f"{src}:{dst}" + (":ro" if read_only else "")]
