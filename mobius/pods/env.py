"""A container's environment, command, args and user, resolved as the kubelet resolves them.

Pure: the ConfigMaps, Secrets, Services and node facts a pod refers to are fetched beforehand
(:mod:`mobius.kube.refs`, told what to fetch by :func:`needs`) and passed in as :class:`PodRefs`.
The rules are the kubelet's (``pkg/kubelet/kubelet_pods.go`` of Kubernetes v1.36):

* ``makeEnvironmentVariables``: ``envFrom`` first (later sources override earlier ones), then
  ``env`` in order, each overriding what came before; a ``value`` is ``$(VAR)``-expanded
  against the variables defined so far and the service variables; ``valueFrom`` values are not
  expanded. Service link variables come last, unless a variable of that name is set already.
* ``podFieldSelectorRuntimeValue`` (fieldRef), ``containerResourceRuntimeValue`` and
  ``MergeContainerResourceLimits`` (resourceFieldRef: unset limits are the node's allocatable).
* ``getServiceEnvVarMap`` and ``envvars.FromServices`` (service links).
* ``ExpandContainerCommandAndArgs``: command and args are expanded with the final environment.
* ``expansion.Expand`` (``third_party/forked/golang/expansion``): ``$(VAR)`` syntax.

The pod's IP is known only inside the running job: it is a :class:`~mobius.runtime.base.RunVar`
part of a :data:`~mobius.runtime.base.Text` value, which the runtimes render as ``"$POD_IP"`` and
never by pasting pod text into the script. ``status.hostIP`` is the node object's address, as
for the kubelet (``getHostIPsAnyWay``), which is also what the pod's status reports.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TypeVar

import msgspec

from mobius.errors import InvalidPodSpec, MissingReference
from mobius.models import Container, Pod
from mobius.models.core import (
    EnvVarSource,
    ObjectFieldSelector,
    PersistentVolume,
    PersistentVolumeClaim,
    PodSecurityContext,
    ResourceFieldSelector,
    SecurityContext,
    Service,
)
from mobius.pods.quantity import parse_quantity
from mobius.runtime.base import RunVar, Text, join_text

__all__ = [
    "ContainerEnv",
    "Needs",
    "PodRefs",
    "PodWarning",
    "RunAs",
    "container_env",
    "expand",
    "host_ips",
    "needs",
    "object_name",
    "pod_warnings",
    "resource_field_value",
    "run_as",
    "service_env",
]

POD_IP = RunVar("POD_IP")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MASTER_SERVICES = ("kubernetes",)  # always linked from "default", even with enableServiceLinks off
_DEFAULT_NAMESPACE = "default"
_OBJECT_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels['<KEY>']",
    "metadata.annotations['<KEY>']",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)


class PodRefs(msgspec.Struct, frozen=True):
    """What a pod's environment refers to, as fetched for one submission.

    A ConfigMap or Secret absent from the maps does not exist. Secret values are decoded bytes.
    ``services`` holds the Services of the pod's namespace (when service links are on) and
    ``default/kubernetes``; :func:`service_env` picks from them by the kubelet's rules.
    ``config_map_binary`` holds the decoded ``binaryData`` of the ConfigMaps (volumes show it).
    ``secret_types`` holds each Secret's ``type`` (image pull secrets must be docker configs).
    ``claims`` holds the PersistentVolumeClaims the volumes name, ``persistent_volumes`` the
    PersistentVolumes bound to them, by name; an absent one does not exist (yet).
    """

    config_maps: dict[str, dict[str, str]] = {}
    config_map_binary: dict[str, dict[str, bytes]] = {}
    secrets: dict[str, dict[str, bytes]] = {}
    services: tuple[Service, ...] = ()
    node_allocatable: dict[str, str] = {}
    host_ips: tuple[str, ...] = ()
    secret_types: dict[str, str] = {}
    claims: dict[str, PersistentVolumeClaim] = {}
    persistent_volumes: dict[str, PersistentVolume] = {}

    def __repr__(self) -> str:  # never show secret values
        return (
            f"<PodRefs configmaps={sorted(self.config_maps)} secrets={sorted(self.secrets)} "
            f"services={len(self.services)} host_ips={list(self.host_ips)}>"
        )


class Needs(msgspec.Struct, frozen=True):
    """What to fetch before a pod's environment can be resolved."""

    config_maps: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()
    service_links: bool = True  # the Services of the pod's namespace (default/kubernetes always)
    node: bool = False  # the node object: status.hostIP(s), limits defaulted to allocatable
    claims: frozenset[str] = frozenset()  # PersistentVolumeClaims, with the volumes bound to them


class PodWarning(msgspec.Struct, frozen=True):
    """Something the user should hear about (a Warning event) though the pod can run."""

    reason: str
    message: str


class ContainerEnv(msgspec.Struct, frozen=True):
    """A container's final environment (in a stable order), command and args."""

    env: tuple[tuple[str, Text], ...]
    command: tuple[Text, ...]
    args: tuple[Text, ...]
    warnings: tuple[PodWarning, ...] = ()


class RunAs(msgspec.Struct, frozen=True):
    """The effective user, group and supplementary groups of a container (None: the image's)."""

    user: int | None = None
    group: int | None = None
    groups: tuple[int, ...] = ()


# --- $(VAR) expansion ---------------------------------------------------------------------------


def expand(text: str, lookup: Callable[[str], Text | None]) -> Text:
    """``text`` with ``$(NAME)`` replaced by ``lookup(NAME)``, as Kubernetes' ``expansion.Expand``.

    ``$$`` is an escaped ``$``; ``$(NAME)`` with an unknown name, an unterminated ``$(``, and a
    ``$`` followed by anything else are kept as written; the name runs to the first ``)`` (so
    ``$(A$(B))`` looks up ``A$(B``). Values are inserted as they are, never expanded again.
    One deliberate difference: Go scans bytes and re-encodes the first byte of a multi-byte
    character after a lone ``$``, garbling it; here such a character is kept intact.
    """
    out: list[Text] = []
    checkpoint = cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            advance = 1
            if nxt == "$":
                out.append("$")
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close < 0:
                    out.append("$(")
                else:
                    name = text[cursor + 2 : close]
                    value = lookup(name)
                    out.append(f"$({name})" if value is None else value)
                    advance = close - cursor
            else:
                out.append("$" + nxt)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return join_text(*out)


# --- what a pod refers to -----------------------------------------------------------------------


def _containers(pod: Pod) -> Iterable[tuple[str, Container]]:
    for i, c in enumerate(pod.spec.init_containers):
        yield f"spec.initContainers[{i}]", c
    for i, c in enumerate(pod.spec.containers):
        yield f"spec.containers[{i}]", c


def needs(pod: Pod) -> Needs:
    """The ConfigMaps, Secrets, Services and node facts the pod's containers refer to."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    node = False
    for _, c in _containers(pod):
        for src in c.env_from:
            if src.config_map_ref is not None:
                config_maps.add(src.config_map_ref.name)
            elif src.secret_ref is not None:
                secrets.add(src.secret_ref.name)
        for var in c.env:
            vf = var.value_from
            if var.value or vf is None:
                continue
            if vf.config_map_key_ref is not None:
                config_maps.add(vf.config_map_key_ref.name)
            elif vf.secret_key_ref is not None:
                secrets.add(vf.secret_key_ref.name)
            elif vf.field_ref is not None:
                node = node or vf.field_ref.field_path in ("status.hostIP", "status.hostIPs")
            elif vf.resource_field_ref is not None:
                node = True
    return Needs(
        config_maps=frozenset(n for n in config_maps if _DNS_SUBDOMAIN.match(n)),
        secrets=frozenset(n for n in secrets if _DNS_SUBDOMAIN.match(n)),
        service_links=pod.spec.enable_service_links is not False,
        node=node,
    )


def object_name(name: str, field: str, kind: str) -> str:
    """``name`` if it can name a ConfigMap or Secret (``kind``), else InvalidPodSpec at ``field``."""
    if not name or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise InvalidPodSpec(field, f"{name!r} is not a valid {kind} name")
    return name


# --- values -------------------------------------------------------------------------------------


V = TypeVar("V", str, bytes)  # ConfigMap data is text, Secret data bytes


def _key_of(
    data: Mapping[str, V] | None, key: str, optional: bool | None, where: str, what: str
) -> V | None:
    """``data[key]`` of a ConfigMap or Secret; None when absent and ``optional``, else
    MissingReference with the kubelet's wording."""
    if data is None:
        if optional:
            return None
        raise MissingReference(where, f"{what} not found")
    if key not in data:
        if optional:
            return None
        raise MissingReference(where, f"couldn't find key {key} in {what}")
    return data[key]


def _check_text(value: str, field: str) -> str:
    if "\x00" in value:
        raise InvalidPodSpec(
            field,
            "contains a NUL character, which no process argument or environment variable can carry",
        )
    return value


def _secret_text(value: bytes, field: str, what: str) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPodSpec(
            field,
            f"{what} is binary (not UTF-8), which Mobius does not put in an environment "
            "variable; mount the Secret as a volume instead",
        ) from None
    return _check_text(text, field)


def _is_env_name(name: str) -> bool:
    """Kubernetes' relaxed rule (``IsRelaxedEnvVarName``, the default since v1.32): printable
    ASCII except ``=``."""
    return bool(name) and all(" " <= ch <= "~" for ch in name) and "=" not in name


def _split_subscript(path: str) -> tuple[str, str] | None:
    """``metadata.labels['k']`` -> ``("metadata.labels", "k")`` (``fieldpath.SplitMaybeSubscriptedPath``)."""
    if not path.endswith("']"):
        return None
    base, sep, key = path[:-2].partition("['")
    return (base, key) if sep and base else None


def _field_ref(pod: Pod, ref: ObjectFieldSelector, refs: PodRefs, field: str) -> Text:
    """``podFieldSelectorRuntimeValue``: the fields the API allows in env."""
    if ref.api_version not in ("", "v1"):
        raise InvalidPodSpec(f"{field}.apiVersion", f"unsupported pod version {ref.api_version!r}")
    meta, path = pod.metadata, ref.field_path
    sub = _split_subscript(path)
    if sub is not None and sub[0] == "metadata.labels":
        return meta.labels.get(sub[1], "")
    if sub is not None and sub[0] == "metadata.annotations":
        return meta.annotations.get(sub[1], "")
    if path in ("status.podIP", "status.podIPs"):
        return join_text(POD_IP)  # one address per pod: podIPs is the same single IP
    if path in ("status.hostIP", "status.hostIPs"):
        if not refs.host_ips:
            raise InvalidPodSpec(f"{field}.fieldPath", "the node's address is not known")
        return refs.host_ips[0] if path == "status.hostIP" else ",".join(refs.host_ips)
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name or "",
    }
    if path in simple:
        return simple[path]
    raise InvalidPodSpec(
        f"{field}.fieldPath",
        f"{path!r} is not supported in env; use one of {', '.join(_OBJECT_FIELDS)}",
    )


def _ceil(x: Decimal) -> int:
    return math.ceil(x)


def resource_field_value(
    pod: Pod, container: Container, sel: ResourceFieldSelector, refs: PodRefs, field: str
) -> str:
    """``containerResourceRuntimeValue`` on the pod with limits defaulted to the node's
    allocatable (``defaultPodLimitsForDownwardAPI``): cpu as ceil(milli / divisor milli),
    memory, ephemeral-storage and hugepages as ceil(value / divisor); an unset request is 0."""
    target = container
    if sel.container_name:
        found = [c for _, c in _containers(pod) if c.name == sel.container_name]
        if not found:
            raise InvalidPodSpec(
                f"{field}.containerName", f"no container named {sel.container_name!r} in the pod"
            )
        target = found[0]
    divisor = Decimal(0)
    if sel.divisor not in (None, ""):
        divisor = parse_quantity(str(sel.divisor), field=f"{field}.divisor")
    if divisor == 0:
        divisor = Decimal(1)
    kind, _, name = sel.resource.partition(".")
    basic = name in ("cpu", "memory", "ephemeral-storage")
    if kind not in ("limits", "requests") or not (basic or name.startswith("hugepages-")):
        raise InvalidPodSpec(
            f"{field}.resource", f"unsupported container resource {sel.resource!r}"
        )
    values = target.resources.limits if kind == "limits" else target.resources.requests
    raw = values.get(name)
    amount = parse_quantity(raw, field=f"{field}.resource") if raw else Decimal(0)
    if kind == "limits" and basic and amount == 0 and name in refs.node_allocatable:
        amount = parse_quantity(refs.node_allocatable[name], field="node allocatable")
    if name == "cpu":
        return str(_ceil(Decimal(_ceil(amount * 1000)) / _ceil(divisor * 1000)))
    return str(_ceil(Decimal(_ceil(amount)) / _ceil(divisor)))


# --- service links ------------------------------------------------------------------------------


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def service_env(services: Iterable[Service], *, namespace: str, links: bool) -> dict[str, str]:
    """``getServiceEnvVarMap`` + ``envvars.FromServices``: variables for the Services with a
    cluster IP (never "None", so Mobius' headless Services give none) in the pod's namespace
    when ``links`` (``enableServiceLinks``), and for ``default/kubernetes`` always (a Service of
    that name in the pod's own namespace wins)."""
    chosen: dict[str, Service] = {}
    for svc in services:
        ip = svc.spec.cluster_ip
        if not ip or ip == "None":
            continue
        name = svc.metadata.name
        if svc.metadata.namespace == _DEFAULT_NAMESPACE and name in _MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif svc.metadata.namespace == namespace and links:
            chosen[name] = svc
    env: dict[str, str] = {}
    for name in sorted(chosen):
        svc = chosen[name]
        ip, ports, prefix = svc.spec.cluster_ip, svc.spec.ports, _env_name(name)
        env[f"{prefix}_SERVICE_HOST"] = ip
        if not ports:
            continue
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].port)
        for sp in ports:
            if sp.name:
                env[f"{prefix}_SERVICE_PORT_{_env_name(sp.name)}"] = str(sp.port)
        host = f"[{ip}]" if ":" in ip else ip  # net.JoinHostPort
        for i, sp in enumerate(ports):
            proto = sp.protocol or "TCP"
            url = f"{proto.lower()}://{host}:{sp.port}"
            if i == 0:
                env[f"{prefix}_PORT"] = url
            port_prefix = f"{prefix}_PORT_{sp.port}_{proto.upper()}"
            env[port_prefix] = url
            env[f"{port_prefix}_PROTO"] = proto.lower()
            env[f"{port_prefix}_PORT"] = str(sp.port)
            env[f"{port_prefix}_ADDR"] = ip
    return env


# --- one container ------------------------------------------------------------------------------


def container_env(pod: Pod, container: Container, *, field: str, refs: PodRefs) -> ContainerEnv:
    """The container's environment, command and args (see the module notes for the rules).

    Raises MissingReference for a missing non-optional ConfigMap, Secret or key (the kubelet's
    CreateContainerConfigError: the pod waits), InvalidPodSpec for what can never work.
    """
    ns = pod.metadata.namespace
    services = service_env(
        refs.services, namespace=ns, links=pod.spec.enable_service_links is not False
    )
    env: dict[str, Text] = {}
    warnings: list[PodWarning] = []

    for j, src in enumerate(container.env_from):
        where = f"{field}.envFrom[{j}]"
        if src.config_map_ref is not None:
            ref, kind, plural = src.config_map_ref, "ConfigMap", "configMap"
            name = object_name(ref.name, f"{where}.configMapRef.name", kind)
            cm = refs.config_maps.get(name)
            if cm is None:
                if ref.optional:
                    continue
                raise MissingReference(f"{where}.configMapRef", f"ConfigMap {ns}/{name} not found")
            data: dict[str, str] = dict(cm)
        elif src.secret_ref is not None:
            sref, kind, plural = src.secret_ref, "Secret", "secret"
            name = object_name(sref.name, f"{where}.secretRef.name", kind)
            secret = refs.secrets.get(name)
            if secret is None:
                if sref.optional:
                    continue
                raise MissingReference(f"{where}.secretRef", f"Secret {ns}/{name} not found")
            data = {
                k: _secret_text(v, f"{where}.secretRef", f"key {k!r} of Secret {ns}/{name}")
                for k, v in secret.items()
            }
        else:
            continue
        invalid: list[str] = []
        for key in sorted(data):
            var_name = src.prefix + key
            if not _is_env_name(var_name):
                invalid.append(var_name)
                continue
            env.pop(var_name, None)  # a later source overrides, and takes the later place
            env[var_name] = _check_text(data[key], f"{where} key {key!r}")
        if invalid:
            warnings.append(
                PodWarning(
                    "InvalidEnvironmentVariableNames",
                    f"Keys [{', '.join(invalid)}] from the EnvFrom {plural} {ns}/{name} were "
                    "skipped since they are considered invalid environment variable names.",
                )
            )

    def lookup(name: str) -> Text | None:
        return env[name] if name in env else services.get(name)

    for j, var in enumerate(container.env):
        where = f"{field}.env[{j}]"
        value: Text
        if var.value:
            value = expand(_check_text(var.value, f"{where}.value"), lookup)
        elif var.value_from is not None:
            got = _value_from(pod, container, var.value_from, refs, f"{where}.valueFrom")
            if got is None:
                continue  # optional and missing: the variable is not set at all
            value = got
        else:
            value = ""
        env[var.name] = value

    for name, value in services.items():
        env.setdefault(name, value)

    def final(name: str) -> Text | None:
        return env.get(name)

    command = tuple(
        expand(_check_text(a, f"{field}.command[{i}]"), final)
        for i, a in enumerate(container.command)
    )
    args = tuple(
        expand(_check_text(a, f"{field}.args[{i}]"), final) for i, a in enumerate(container.args)
    )
    return ContainerEnv(
        env=tuple(env.items()), command=command, args=args, warnings=tuple(warnings)
    )


def _value_from(
    pod: Pod, container: Container, vf: EnvVarSource, refs: PodRefs, field: str
) -> Text | None:
    """One ``valueFrom``; None when an optional source is missing (the variable is left out)."""
    ns = pod.metadata.namespace
    if vf.field_ref is not None:
        return _field_ref(pod, vf.field_ref, refs, f"{field}.fieldRef")
    if vf.resource_field_ref is not None:
        return resource_field_value(
            pod, container, vf.resource_field_ref, refs, f"{field}.resourceFieldRef"
        )
    if vf.config_map_key_ref is not None:
        ref, where = vf.config_map_key_ref, f"{field}.configMapKeyRef"
        name = object_name(ref.name, f"{where}.name", "ConfigMap")
        value = _key_of(
            refs.config_maps.get(name), ref.key, ref.optional, where, f"ConfigMap {ns}/{name}"
        )
        return None if value is None else _check_text(value, where)
    if vf.secret_key_ref is not None:
        sref, where = vf.secret_key_ref, f"{field}.secretKeyRef"
        name = object_name(sref.name, f"{where}.name", "Secret")
        data = _key_of(
            refs.secrets.get(name), sref.key, sref.optional, where, f"Secret {ns}/{name}"
        )
        if data is None:
            return None
        return _secret_text(data, where, f"key {sref.key!r} of Secret {ns}/{name}")
    raise InvalidPodSpec(field, "needs fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef")


# --- who the container runs as ------------------------------------------------------------------


def run_as(pod: Pod, container: Container, *, field: str) -> RunAs:
    """The effective runAsUser/runAsGroup (container over pod, ``DetermineEffectiveSecurityContext``)
    and supplementary groups (pod ``supplementalGroups`` plus ``fsGroup``, as the kubelet adds it).

    ``runAsNonRoot`` with ``runAsUser: 0`` is refused (kubelet ``verifyRunAsNonRoot``: "container's
    runAsUser breaks non-root policy"); a group without a user is refused as the CRI runtimes do.
    """
    psc = pod.spec.security_context or PodSecurityContext()
    csc = container.security_context or SecurityContext()
    user = csc.run_as_user if csc.run_as_user is not None else psc.run_as_user
    group = csc.run_as_group if csc.run_as_group is not None else psc.run_as_group
    non_root = csc.run_as_non_root if csc.run_as_non_root is not None else psc.run_as_non_root
    if non_root and user == 0:
        raise InvalidPodSpec(
            f"{field}.securityContext.runAsNonRoot",
            "container's runAsUser breaks non-root policy (runAsNonRoot with runAsUser 0)",
        )
    if group is not None and user is None:
        raise InvalidPodSpec(
            f"{field}.securityContext.runAsGroup", "runAsGroup is set without runAsUser"
        )
    groups = list(dict.fromkeys(psc.supplemental_groups))
    if psc.fs_group is not None and psc.fs_group not in groups:
        groups.append(psc.fs_group)
    return RunAs(user=user, group=group, groups=tuple(groups))


def _ignored_security_fields(pod: Pod, *, runtime: str) -> list[str]:
    switch_user = runtime == "podman"
    ignored: list[str] = []
    psc = pod.spec.security_context
    if psc is not None:
        f = "spec.securityContext"
        pod_fields = {
            "sysctls": bool(psc.sysctls),
            "seLinuxOptions": psc.se_linux_options is not None,
            "seccompProfile": psc.seccomp_profile is not None
            and not (switch_user and psc.seccomp_profile.get("type") == "RuntimeDefault"),
            "appArmorProfile": psc.app_armor_profile is not None,
            "windowsOptions": psc.windows_options is not None,
            "fsGroupChangePolicy": psc.fs_group_change_policy is not None,
            "supplementalGroupsPolicy": psc.supplemental_groups_policy is not None,
            "seLinuxChangePolicy": psc.se_linux_change_policy is not None,
            "runAsUser": not switch_user and psc.run_as_user is not None,
            "runAsGroup": not switch_user and psc.run_as_group is not None,
            "fsGroup": not switch_user and psc.fs_group is not None,
            "supplementalGroups": not switch_user and bool(psc.supplemental_groups),
        }
        ignored += [f"{f}.{k}" for k, bad in pod_fields.items() if bad]
    for where, c in _containers(pod):
        csc = c.security_context or SecurityContext()
        f = f"{where}.securityContext"
        fields = {
            "privileged": bool(csc.privileged),
            "allowPrivilegeEscalation": csc.allow_privilege_escalation is not None,
            "capabilities": csc.capabilities is not None,
            "seLinuxOptions": csc.se_linux_options is not None,
            "readOnlyRootFilesystem": bool(csc.read_only_root_filesystem),
            "procMount": csc.proc_mount not in (None, "Default"),
            "seccompProfile": csc.seccomp_profile is not None
            and not (switch_user and csc.seccomp_profile.get("type") == "RuntimeDefault"),
            "appArmorProfile": csc.app_armor_profile is not None,
            "windowsOptions": csc.windows_options is not None,
            "runAsUser": not switch_user and csc.run_as_user is not None,
            "runAsGroup": not switch_user and csc.run_as_group is not None,
        }
        ignored += [f"{f}.{k}" for k, bad in fields.items() if bad]
        # verifyRunAsNonRoot also checks the image's user when runAsUser is unset; Mobius cannot
        # inspect the image before the job runs.
        who = run_as(pod, c, field=where)
        if who.user is None and csc.run_as_non_root:
            ignored.append(f"{f}.runAsNonRoot (the image's user is not checked)")
        elif who.user is None and csc.run_as_non_root is None and psc and psc.run_as_non_root:
            ignored.append("spec.securityContext.runAsNonRoot (the image's user is not checked)")
    return list(dict.fromkeys(ignored))


def pod_warnings(pod: Pod, *, refs: PodRefs, runtime: str) -> tuple[PodWarning, ...]:
    """The Warning events a pod that can run deserves: envFrom keys skipped, and ONE event naming
    the securityContext fields ``runtime`` cannot honour. Call it after the script rendered."""
    found: list[PodWarning] = []
    for where, c in _containers(pod):
        found += container_env(pod, c, field=where, refs=refs).warnings
    ignored = _ignored_security_fields(pod, runtime=runtime)
    if ignored:
        found.append(
            PodWarning(
                "SecurityContextIgnored",
                f"Mobius ({runtime}) cannot honour these securityContext fields and ignores "
                f"them: {', '.join(ignored)}",
            )
        )
    return tuple(dict.fromkeys(found))


def host_ips(addresses: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """``GetNodeHostIPs``: the first InternalIP (else ExternalIP) address, then the first of the
    other IP family, from ``(type, address)`` pairs of the node's status."""
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for kind in ("InternalIP", "ExternalIP"):
        for t, a in addresses:
            if t != kind:
                continue
            try:
                ip = ipaddress.ip_address(a)
            except ValueError:
                continue
            if not ips or (len(ips) == 1 and ip.version != ips[0].version):
                ips.append(ip)
    return tuple(str(ip) for ip in ips)
