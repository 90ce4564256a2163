"""Container environments with Kubernetes semantics: $(VAR), fieldRef, resourceFieldRef,
ConfigMaps/Secrets, envFrom, service links, securityContext; and no value reaches the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius.errors import InvalidPodSpec, MissingReference
from mobius.models import Pod
from mobius.models.core import Service
from mobius.pods.env import (
    PodRefs,
    container_env,
    expand,
    host_ips,
    needs,
    pod_warnings,
    run_as,
    service_env,
)
from mobius.pods.script import render_job
from mobius.runtime import Podman
from mobius.runtime.apptainer import Apptainer
from mobius.runtime.base import Late, RunVar, Text, join_text, shell_word
from tests.pods.test_script import fake_podman, recorded_runs, run_script  # noqa: F401

POD_IP = RunVar("POD_IP")


def pod_with(container: dict[str, Any] | None = None, **spec: Any) -> Pod:
    raw = {
        "metadata": {
            "name": "web", "namespace": "ns", "uid": "u-1",
            "labels": {"app": "web", "tier": "front"}, "annotations": {"owner": "me"},
        },
        "spec": {
            "nodeName": "mobius", "serviceAccountName": "robot", "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", **(container or {})}], **spec,
        },
    }
    return msgspec.convert(raw, Pod)


def env_of(pod: Pod, refs: PodRefs | None = None) -> dict[str, Text]:
    return dict(container_env(pod, pod.spec.containers[0], field="spec.containers[0]",
                              refs=refs or PodRefs()).env)


# --- $(VAR) expansion: the cases of Kubernetes' third_party/forked/golang/expansion tests ---------

VARS = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": "",
        "BIG_MONEY": "$1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
        ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
        ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("foo\\$(VAR_C)bar", "foo\\Cbar"),
        ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
        ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
        ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
        ("$(VAR_REF)", "$(VAR_A)"),  # values are not expanded again
        ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
        ("foo$(VAR_EMPTY)bar", "foobar"),
        ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
        ("f00__(VAR_A)__", "f00__(VAR_A)__"),
        ("$?_boo_$!", "$?_boo_$!"),
        ("$VAR_A", "$VAR_A"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$(VAR_A)$(VAR_DNE)$(VAR_DNE2)$(VAR_B)", "A$(VAR_DNE)$(VAR_DNE2)B"),
        ("$$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$$$$$$$(BIG_MONEY)", "$$$$1"),
        ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
        ("$$", "$"),
        ("$", "$"),
        ("foo$", "foo$"),
        ("$(", "$("),
        ("$()", "$()"),
        ("$(VAR_A)$", "A$"),
        ("\n", "\n"),
        ("$é", "$é"),  # kept intact (Go garbles the byte after a lone $)
    ],
)
def test_expansion_follows_kubernetes(text: str, expected: str) -> None:
    assert expand(text, VARS.get) == expected


def test_expansion_keeps_run_time_values_apart() -> None:
    got = expand("http://$(IP):80/$(IP)", {"IP": join_text(POD_IP)}.get)
    assert got == Late(("http://", POD_IP, ":80/", POD_IP))
    assert shell_word(got) == 'http://"${POD_IP}":80/"${POD_IP}"'
    assert shell_word(join_text("a b$", POD_IP)) == "'a b$'\"${POD_IP}\""


def test_run_var_names_are_a_closed_set() -> None:
    with pytest.raises(ValueError, match="not a job script variable"):
        RunVar("HOME; rm -rf /")


def test_env_values_see_earlier_variables_only() -> None:
    pod = pod_with({
        "env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-$(C)-$$(A)"},  # C is declared later: left as is
            {"name": "C", "value": "c"},
            {"name": "A", "value": "$(A)$(A)"},  # redefinition sees the earlier value
        ],
        "command": ["echo", "$(B)"], "args": ["$(A)", "$$(A)", "$(NOPE)"],
    })
    resolved = container_env(pod, pod.spec.containers[0], field="f", refs=PodRefs())
    assert dict(resolved.env) == {"A": "aa", "B": "a-$(C)-$(A)", "C": "c"}
    assert resolved.command == ("echo", "a-$(C)-$(A)")
    assert resolved.args == ("aa", "$(A)", "$(NOPE)")


# --- fieldRef and resourceFieldRef --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "web"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['app']", "web"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['owner']", "me"),
        ("spec.nodeName", "mobius"),
        ("spec.serviceAccountName", "robot"),
        ("status.hostIP", "10.0.0.5"),
        ("status.hostIPs", "10.0.0.5,fd00::5"),
        ("status.podIP", Late((POD_IP,))),
        ("status.podIPs", Late((POD_IP,))),
    ],
)
def test_every_field_ref(path: str, expected: Text) -> None:
    pod = pod_with({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})
    refs = PodRefs(host_ips=("10.0.0.5", "fd00::5"))
    assert env_of(pod, refs)["X"] == expected


@pytest.mark.parametrize("path", ["spec.restartPolicy", "status.phase", "metadata.labels"])
def test_field_refs_outside_the_env_list_are_refused(path: str) -> None:
    pod = pod_with({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})
    with pytest.raises(InvalidPodSpec) as info:
        env_of(pod)
    assert info.value.field == "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath"


def test_node_addresses_give_host_ips_as_the_kubelet_picks_them() -> None:
    addresses = [("Hostname", "n"), ("ExternalIP", "1.2.3.4"), ("InternalIP", "10.0.0.5"),
                 ("InternalIP", "10.0.0.6"), ("InternalIP", "fd00::5")]
    assert host_ips(addresses) == ("10.0.0.5", "fd00::5")


RESOURCES = {"limits": {"cpu": "1500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "1000"}}


@pytest.mark.parametrize(
    ("resource", "divisor", "expected"),
    [
        ("limits.cpu", None, "2"),  # ceil(1.5)
        ("limits.cpu", "1m", "1500"),
        ("requests.cpu", "1m", "250"),
        ("requests.cpu", "1", "1"),
        ("limits.memory", None, str(64 * 1024**2)),
        ("limits.memory", "1Mi", "64"),
        ("limits.memory", "1M", "68"),  # ceil(67.1)
        ("requests.memory", "1Ki", "1"),  # ceil(1000 / 1024)
        ("requests.ephemeral-storage", None, "0"),  # unset request
        ("limits.ephemeral-storage", "1Gi", "100"),  # unset limit: the node's allocatable
    ],
)
def test_resource_field_ref_divisors(resource: str, divisor: str | None, expected: str) -> None:
    ref: dict[str, Any] = {"resource": resource, **({"divisor": divisor} if divisor else {})}
    pod = pod_with({"resources": RESOURCES,
                    "env": [{"name": "R", "valueFrom": {"resourceFieldRef": ref}}]})
    refs = PodRefs(node_allocatable={"cpu": "32", "memory": "128Gi", "ephemeral-storage": "100Gi"})
    assert env_of(pod, refs)["R"] == expected


def test_unset_limits_are_the_node_allocatable_and_other_containers_can_be_named() -> None:
    pod = pod_with(
        {"env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                "resource": "limits.memory", "divisor": "1Gi"}}},
            {"name": "SIDE", "valueFrom": {"resourceFieldRef": {
                "containerName": "side", "resource": "requests.cpu", "divisor": "1m"}}},
        ]},
        initContainers=[{"name": "side", "image": "b", "resources": {"requests": {"cpu": "0.1"}}}],
    )
    refs = PodRefs(node_allocatable={"cpu": "32", "memory": "128Gi"})
    assert {k: env_of(pod, refs)[k] for k in ("CPU", "MEM", "SIDE")} == {
        "CPU": "32", "MEM": "128", "SIDE": "100"}


# --- ConfigMaps, Secrets, envFrom ---------------------------------------------------------------

REFS = PodRefs(
    config_maps={"cfg": {"mode": "fast", "level": "3", "1badkey": "x", "bad=key": "y"}},
    secrets={"creds": {"password": b"s3cr=t $(x)", "user": b"admin"}, "bin": {"key": b"\xff\xfe"}},
)


def test_config_map_and_secret_keys() -> None:
    pod = pod_with({"env": [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
        {"name": "NOKEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k", "optional": True}}},
    ]})
    env = env_of(pod, REFS)
    assert env["MODE"] == "fast"
    assert env["PW"] == "s3cr=t $(x)"  # valueFrom values are not expanded
    assert "GONE" not in env
    assert "NOKEY" not in env


@pytest.mark.parametrize(
    ("var", "field", "message"),
    [
        ({"configMapKeyRef": {"name": "nope", "key": "k"}},
         "spec.containers[0].env[0].valueFrom.configMapKeyRef", "ConfigMap ns/nope not found"),
        ({"configMapKeyRef": {"name": "cfg", "key": "k"}},
         "spec.containers[0].env[0].valueFrom.configMapKeyRef", "couldn't find key k in ConfigMap ns/cfg"),
        ({"secretKeyRef": {"name": "nope", "key": "k"}},
         "spec.containers[0].env[0].valueFrom.secretKeyRef", "Secret ns/nope not found"),
        ({"secretKeyRef": {"name": "creds", "key": "k"}},
         "spec.containers[0].env[0].valueFrom.secretKeyRef", "couldn't find key k in Secret ns/creds"),
    ],
)
def test_missing_references_make_the_pod_wait(var: dict[str, Any], field: str, message: str) -> None:
    pod = pod_with({"env": [{"name": "X", "valueFrom": var}]})
    with pytest.raises(MissingReference) as info:
        env_of(pod, REFS)
    assert (info.value.field, info.value.why) == (field, message)


def test_binary_secret_values_are_refused_for_env() -> None:
    pod = pod_with({"env": [{"name": "B", "valueFrom": {"secretKeyRef": {"name": "bin", "key": "key"}}}]})
    with pytest.raises(InvalidPodSpec, match=r"binary \(not UTF-8\)") as info:
        env_of(pod, REFS)
    assert not isinstance(info.value, MissingReference)


def test_env_from_with_prefix_order_and_invalid_keys() -> None:
    pod = pod_with({
        "envFrom": [
            {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
            {"configMapRef": {"name": "absent", "optional": True}},
            {"secretRef": {"name": "absent", "optional": True}},
        ],
        "env": [{"name": "user", "value": "override of $(CFG_mode)"}],
    })
    resolved = container_env(pod, pod.spec.containers[0], field="spec.containers[0]", refs=REFS)
    env = dict(resolved.env)
    # Kubernetes >= 1.32 accepts any printable ASCII but "=" in names ("1badkey" is kept).
    assert env == {"CFG_1badkey": "x", "CFG_level": "3", "CFG_mode": "fast",
                   "password": "s3cr=t $(x)", "user": "override of fast"}
    (warning,) = resolved.warnings
    assert warning.reason == "InvalidEnvironmentVariableNames"
    assert warning.message == ("Keys [CFG_bad=key] from the EnvFrom configMap ns/cfg were skipped "
                               "since they are considered invalid environment variable names.")
    assert pod_warnings(pod, refs=REFS, runtime="podman") == (warning,)


def test_env_from_a_missing_config_map_names_the_field() -> None:
    pod = pod_with({"envFrom": [{"secretRef": {"name": "creds"}}, {"configMapRef": {"name": "nope"}}]})
    with pytest.raises(MissingReference) as info:
        env_of(pod, REFS)
    assert info.value.field == "spec.containers[0].envFrom[1].configMapRef"


def test_needs_lists_what_to_fetch() -> None:
    pod = pod_with(
        {"envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s"}}],
         "env": [{"name": "H", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                 {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "../x", "key": "k"}}}]},
        enableServiceLinks=False,
    )
    got = needs(pod)
    assert (got.config_maps, got.secrets, got.service_links, got.node) == ({"a"}, {"s"}, False, True)
    with pytest.raises(InvalidPodSpec, match="not a valid ConfigMap name"):
        env_of(pod, PodRefs(config_maps={"a": {}}, secrets={"s": {}}, host_ips=("1.1.1.1",)))


# --- service links ------------------------------------------------------------------------------


def svc(ns: str, name: str, ip: str, *ports: dict[str, Any]) -> Service:
    return msgspec.convert({"metadata": {"name": name, "namespace": ns},
                            "spec": {"clusterIP": ip, "ports": list(ports)}}, Service)


SERVICES = (
    svc("default", "kubernetes", "10.96.0.1", {"name": "https", "port": 443}),
    svc("ns", "redis-main", "10.96.0.7", {"port": 6379}, {"name": "metrics", "port": 9121, "protocol": "UDP"}),
    svc("ns", "headless", "None", {"port": 80}),
    svc("other", "elsewhere", "10.96.0.9", {"port": 80}),
)


def test_service_links_follow_the_kubelet() -> None:
    env = service_env(SERVICES, namespace="ns", links=True)
    assert env == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
        "REDIS_MAIN_SERVICE_HOST": "10.96.0.7",
        "REDIS_MAIN_SERVICE_PORT": "6379",
        "REDIS_MAIN_SERVICE_PORT_METRICS": "9121",
        "REDIS_MAIN_PORT": "tcp://10.96.0.7:6379",
        "REDIS_MAIN_PORT_6379_TCP": "tcp://10.96.0.7:6379",
        "REDIS_MAIN_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_MAIN_PORT_6379_TCP_PORT": "6379",
        "REDIS_MAIN_PORT_6379_TCP_ADDR": "10.96.0.7",
        "REDIS_MAIN_PORT_9121_UDP": "udp://10.96.0.7:9121",
        "REDIS_MAIN_PORT_9121_UDP_PROTO": "udp",
        "REDIS_MAIN_PORT_9121_UDP_PORT": "9121",
        "REDIS_MAIN_PORT_9121_UDP_ADDR": "10.96.0.7",
    }
    assert set(service_env(SERVICES, namespace="ns", links=False)) == {
        k for k in env if k.startswith("KUBERNETES_")}  # the master service is always linked
    local = svc("ns", "kubernetes", "10.96.5.5", {"port": 80})
    assert service_env((*SERVICES, local), namespace="ns", links=True)["KUBERNETES_SERVICE_HOST"] == "10.96.5.5"
    v6 = service_env((svc("ns", "six", "fd00::1", {"port": 80}),), namespace="ns", links=True)
    assert v6["SIX_PORT"] == "tcp://[fd00::1]:80"


def test_service_variables_come_last_and_feed_expansion() -> None:
    pod = pod_with({"env": [{"name": "REDIS_MAIN_SERVICE_PORT", "value": "1"},
                            {"name": "URL", "value": "redis://$(REDIS_MAIN_SERVICE_HOST)"}],
                    "args": ["$(KUBERNETES_SERVICE_HOST)"]})
    resolved = container_env(pod, pod.spec.containers[0], field="f", refs=PodRefs(services=SERVICES))
    env = dict(resolved.env)
    assert env["REDIS_MAIN_SERVICE_PORT"] == "1"  # the pod's own value wins
    assert env["URL"] == "redis://10.96.0.7"
    assert resolved.args == ("10.96.0.1",)
    assert list(env)[:2] == ["REDIS_MAIN_SERVICE_PORT", "URL"]
    off = pod_with({}, enableServiceLinks=False)
    assert set(env_of(off, PodRefs(services=SERVICES))) == {
        k for k in env if k.startswith("KUBERNETES_")}


# --- securityContext ----------------------------------------------------------------------------


def test_run_as_container_over_pod_and_groups() -> None:
    pod = pod_with({"securityContext": {"runAsUser": 2000}},
                   securityContext={"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 4000,
                                    "supplementalGroups": [5000, 4000]})
    who = run_as(pod, pod.spec.containers[0], field="f")
    assert (who.user, who.group, who.groups) == (2000, 3000, (5000, 4000))
    run = render_job(pod, pod_dir="/p", runtime=Podman()).script
    assert "--user 2000:3000 --group-add 5000 --group-add 4000" in run


@pytest.mark.parametrize(
    ("container_sc", "pod_sc", "field"),
    [
        ({"runAsNonRoot": True, "runAsUser": 0}, {}, "f.securityContext.runAsNonRoot"),
        ({"runAsUser": 0}, {"runAsNonRoot": True}, "f.securityContext.runAsNonRoot"),
        ({"runAsGroup": 5}, {}, "f.securityContext.runAsGroup"),
    ],
)
def test_run_as_refusals(container_sc: dict[str, Any], pod_sc: dict[str, Any], field: str) -> None:
    pod = pod_with({"securityContext": container_sc}, securityContext=pod_sc)
    with pytest.raises(InvalidPodSpec) as info:
        run_as(pod, pod.spec.containers[0], field="f")
    assert info.value.field == field


def test_unhonoured_security_fields_make_one_warning() -> None:
    pod = pod_with(
        {"securityContext": {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]},
                             "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"},
                             "readOnlyRootFilesystem": False, "procMount": "Default"}},
        securityContext={"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
                         "runAsNonRoot": True},
    )
    (podman,) = pod_warnings(pod, refs=PodRefs(), runtime="podman")
    assert podman.reason == "SecurityContextIgnored"
    assert podman.message.endswith(
        "spec.securityContext.sysctls, spec.containers[0].securityContext.privileged, "
        "spec.containers[0].securityContext.capabilities")
    (apptainer,) = pod_warnings(pod, refs=PodRefs(), runtime="apptainer")
    assert "spec.containers[0].securityContext.runAsUser" in apptainer.message
    assert "seccompProfile" in apptainer.message
    bare = pod_with({}, securityContext={"runAsNonRoot": True})
    (w,) = pod_warnings(bare, refs=PodRefs(), runtime="podman")
    assert "spec.securityContext.runAsNonRoot (the image's user is not checked)" in w.message
    assert pod_warnings(pod_with(), refs=PodRefs(), runtime="podman") == ()


def test_apptainer_ignores_the_user() -> None:
    pod = pod_with({"securityContext": {"runAsUser": 4321}})
    script = render_job(pod, pod_dir="/p", runtime=Apptainer()).script
    assert "--user" not in script
    assert "4321" not in script


# --- nothing reaches the shell; the pod IP arrives ----------------------------------------------

hostile = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(hostile, max_size=3), value=hostile, around=hostile)
def test_values_never_reach_the_shell_and_the_pod_ip_arrives(
    tmp_path: Path, fake_podman: tuple[Path, dict[str, str]],  # noqa: F811
    args: list[str], value: str, around: str,
) -> None:
    record, env = fake_podman
    for f in record.iterdir():
        f.unlink()
    container = {
        "name": "c", "image": "busybox",
        "command": ["run", "$(V)"],
        "args": [*args, "$(MY_IP)", around + "$(MY_IP)" + around],
        "env": [
            {"name": "V", "value": value},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": around + "$(MY_IP)$$(MY_IP)"},
        ],
    }
    pod = pod_with(container)
    resolved = container_env(pod, pod.spec.containers[0], field="f", refs=PodRefs())
    proc = run_script(pod, tmp_path, env)
    assert proc.returncode == 0, proc.stderr

    def real(text: Text) -> str:  # what the script must make of a value: the IP it found
        parts = text.parts if isinstance(text, Late) else (text,)
        return "".join("10.88.0.9" if isinstance(p, RunVar) else p for p in parts)

    (run,) = recorded_runs(record)
    expected_args = [real(a) for a in resolved.args]
    assert run[len(run) - len(expected_args) - 1:] == ["busybox", *expected_args]
    assert run[-2] == "10.88.0.9"
    assert "MY_IP=10.88.0.9" in run
    url = real(dict(resolved.env)["URL"])
    assert f"URL={url}" in run
    if "$" not in around:
        assert url == f"{around}10.88.0.9$(MY_IP)"
    assert f"V={real(resolved.env[0][1])}" in run
    entrypoint = msgspec.json.decode(run[run.index("--entrypoint") + 1])
    assert entrypoint == ["run", real(resolved.env[0][1])]
