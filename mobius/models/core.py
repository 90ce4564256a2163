"""Pods and the pieces of them Mobius reads, as msgspec Structs.

Field names follow the API (camelCase on the wire, snake_case here). Everything Mobius does not
read is left out, so decoding stays cheap with thousands of pods.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Model(msgspec.Struct, rename="camel", omit_defaults=True):
    pass


class OwnerReference(_Model):
    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool | None = None


class ObjectMeta(_Model):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    owner_references: list[OwnerReference] = []
    finalizers: list[str] = []


class ListMeta(_Model):
    resource_version: str = ""
    continue_: str | None = msgspec.field(default=None, name="continue")


class ObjectFieldSelector(_Model):
    field_path: str
    api_version: str = "v1"


class ResourceFieldSelector(_Model):
    resource: str
    container_name: str = ""
    divisor: str | int | float | None = None  # a quantity; YAML may give a bare number


class ConfigMapKeySelector(_Model):
    key: str
    name: str = ""
    optional: bool | None = None


class SecretKeySelector(_Model):
    key: str
    name: str = ""
    optional: bool | None = None


class EnvVarSource(_Model):
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None
    secret_key_ref: SecretKeySelector | None = None


class EnvVar(_Model):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class ConfigMapEnvSource(_Model):
    name: str = ""
    optional: bool | None = None


class SecretEnvSource(_Model):
    name: str = ""
    optional: bool | None = None


class EnvFromSource(_Model):
    prefix: str = ""
    config_map_ref: ConfigMapEnvSource | None = None
    secret_ref: SecretEnvSource | None = None


class SecurityContext(_Model):
    """A container's securityContext. Fields Mobius cannot honour are kept (loosely typed) only
    so that a warning can name them."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = None
    read_only_root_filesystem: bool | None = None
    proc_mount: str | None = None
    capabilities: dict[str, Any] | None = None
    se_linux_options: dict[str, Any] | None = None
    seccomp_profile: dict[str, Any] | None = None
    app_armor_profile: dict[str, Any] | None = None
    windows_options: dict[str, Any] | None = None


class PodSecurityContext(_Model):
    """The pod's securityContext (defaults for every container, plus pod-wide settings)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None
    supplemental_groups: list[int] = []
    fs_group_change_policy: str | None = None
    supplemental_groups_policy: str | None = None
    se_linux_change_policy: str | None = None
    sysctls: list[dict[str, Any]] = []
    se_linux_options: dict[str, Any] | None = None
    seccomp_profile: dict[str, Any] | None = None
    app_armor_profile: dict[str, Any] | None = None
    windows_options: dict[str, Any] | None = None


class ContainerPort(_Model):
    container_port: int
    name: str | None = None
    protocol: str = "TCP"
    host_port: int | None = None


class ResourceRequirements(_Model):
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}


class Container(_Model):
    name: str
    image: str = ""
    command: list[str] = []
    args: list[str] = []
    working_dir: str | None = None
    env: list[EnvVar] = []
    env_from: list[EnvFromSource] = []
    ports: list[ContainerPort] = []
    resources: ResourceRequirements = msgspec.field(default_factory=ResourceRequirements)
    image_pull_policy: str | None = None
    tty: bool = False
    stdin: bool = False
    security_context: SecurityContext | None = None


class PodSpec(_Model):
    containers: list[Container] = []
    init_containers: list[Container] = []
    node_name: str = ""
    scheduler_name: str = "default-scheduler"
    restart_policy: str = "Always"
    termination_grace_period_seconds: int | None = None
    active_deadline_seconds: int | None = None
    host_network: bool = False
    hostname: str | None = None
    subdomain: str | None = None
    service_account_name: str | None = None
    node_selector: dict[str, str] = {}
    priority: int | None = None
    enable_service_links: bool | None = None  # None: true, as the API server defaults it
    security_context: PodSecurityContext | None = None


class PodStatus(_Model):
    phase: str = ""
    reason: str | None = None
    message: str | None = None
    pod_ip: str | None = msgspec.field(default=None, name="podIP")
    host_ip: str | None = msgspec.field(default=None, name="hostIP")
    start_time: str | None = None
    conditions: list[dict[str, Any]] = []
    container_statuses: list[dict[str, Any]] = []
    init_container_statuses: list[dict[str, Any]] = []


class Pod(_Model):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)
    api_version: str = "v1"
    kind: str = "Pod"

    @property
    def key(self) -> str:
        """``namespace/name``, how people name a pod."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    def __repr__(self) -> str:
        return f"<Pod {self.key} uid={self.metadata.uid} node={self.spec.node_name or '-'}>"


class PodList(_Model):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Pod] = []


class ConfigMap(_Model):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    data: dict[str, str] = {}


class Secret(_Model):
    """A Secret as the API sends it: ``data`` values are base64 (``mobius.kube.refs`` decodes)."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    data: dict[str, str] = {}
    type: str = ""

    def __repr__(self) -> str:  # never show the values
        return f"<Secret {self.metadata.namespace}/{self.metadata.name} keys={sorted(self.data)}>"


class ServicePort(_Model):
    port: int
    name: str = ""
    protocol: str = "TCP"


class ServiceSpec(_Model):
    cluster_ip: str = msgspec.field(default="", name="clusterIP")
    type: str = "ClusterIP"
    ports: list[ServicePort] = []


class Service(_Model):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ServiceSpec = msgspec.field(default_factory=ServiceSpec)


class ServiceList(_Model):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Service] = []


class NodeAddress(_Model):
    type: str
    address: str


class NodeStatus(_Model):
    allocatable: dict[str, str] = {}
    capacity: dict[str, str] = {}
    addresses: list[NodeAddress] = []


class Node(_Model):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


class WatchEvent(_Model):
    """One line of a watch stream. ``object`` stays raw: its kind depends on ``type``."""

    type: str
    object: msgspec.Raw
