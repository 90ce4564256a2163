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


class VolumeMount(_Model):
    name: str
    mount_path: str = ""
    read_only: bool = False
    sub_path: str = ""
    sub_path_expr: str = ""
    mount_propagation: str | None = None
    recursive_read_only: str | None = None


class ExecAction(_Model):
    command: list[str] = []


class HTTPHeader(_Model):
    name: str
    value: str = ""


class HTTPGetAction(_Model):
    port: int | str  # a number, or the name of one of the container's ports
    path: str = ""
    host: str = ""  # "": the pod's IP
    scheme: str = "HTTP"
    http_headers: list[HTTPHeader] = []


class TCPSocketAction(_Model):
    port: int | str
    host: str = ""


class GRPCAction(_Model):
    port: int
    service: str | None = None


class SleepAction(_Model):
    seconds: int


class Probe(_Model):
    """A startup, liveness or readiness probe, with the API server's defaults."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None


class LifecycleHandler(_Model):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None  # deprecated; the kubelet does not run it
    sleep: SleepAction | None = None


class Lifecycle(_Model):
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None


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
    volume_mounts: list[VolumeMount] = []
    volume_devices: list[dict[str, Any]] = []
    startup_probe: Probe | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    lifecycle: Lifecycle | None = None


class KeyToPath(_Model):
    key: str
    path: str
    mode: int | None = None


class ConfigMapVolumeSource(_Model):
    name: str = ""
    items: list[KeyToPath] = []
    default_mode: int | None = None
    optional: bool | None = None


class SecretVolumeSource(_Model):
    secret_name: str = ""
    items: list[KeyToPath] = []
    default_mode: int | None = None
    optional: bool | None = None


class DownwardAPIVolumeFile(_Model):
    path: str
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    mode: int | None = None


class DownwardAPIVolumeSource(_Model):
    items: list[DownwardAPIVolumeFile] = []
    default_mode: int | None = None


class ConfigMapProjection(_Model):
    name: str = ""
    items: list[KeyToPath] = []
    optional: bool | None = None


class SecretProjection(_Model):
    name: str = ""
    items: list[KeyToPath] = []
    optional: bool | None = None


class DownwardAPIProjection(_Model):
    items: list[DownwardAPIVolumeFile] = []


class ServiceAccountTokenProjection(_Model):
    path: str
    audience: str = ""
    expiration_seconds: int | None = None


class VolumeProjection(_Model):
    """One source of a projected volume. Sources Mobius cannot fill are kept loosely typed so
    that the error can name them."""

    config_map: ConfigMapProjection | None = None
    secret: SecretProjection | None = None
    downward_api: DownwardAPIProjection | None = msgspec.field(default=None, name="downwardAPI")
    service_account_token: ServiceAccountTokenProjection | None = None
    cluster_trust_bundle: dict[str, Any] | None = None
    pod_certificate: dict[str, Any] | None = None


class ProjectedVolumeSource(_Model):
    sources: list[VolumeProjection] = []
    default_mode: int | None = None


class EmptyDirVolumeSource(_Model):
    medium: str = ""
    size_limit: str | int | None = None  # a quantity; YAML may give a bare number


class HostPathVolumeSource(_Model):
    path: str
    type: str | None = None


class PersistentVolumeClaimVolumeSource(_Model):
    claim_name: str = ""
    read_only: bool = False


class Volume(_Model):
    """A pod volume. The sources Mobius provides are typed; every other source of the core API
    is kept as a raw mapping only so that the pod can be refused with the volume's type named."""

    name: str
    empty_dir: EmptyDirVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = msgspec.field(default=None, name="downwardAPI")
    projected: ProjectedVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None
    gce_persistent_disk: dict[str, Any] | None = None
    aws_elastic_block_store: dict[str, Any] | None = None
    git_repo: dict[str, Any] | None = None
    nfs: dict[str, Any] | None = None
    iscsi: dict[str, Any] | None = None
    glusterfs: dict[str, Any] | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    rbd: dict[str, Any] | None = None
    flex_volume: dict[str, Any] | None = None
    cinder: dict[str, Any] | None = None
    cephfs: dict[str, Any] | None = None
    flocker: dict[str, Any] | None = None
    fc: dict[str, Any] | None = None
    azure_file: dict[str, Any] | None = None
    vsphere_volume: dict[str, Any] | None = None
    quobyte: dict[str, Any] | None = None
    azure_disk: dict[str, Any] | None = None
    photon_persistent_disk: dict[str, Any] | None = None
    portworx_volume: dict[str, Any] | None = None
    scale_io: dict[str, Any] | None = msgspec.field(default=None, name="scaleIO")
    storageos: dict[str, Any] | None = None
    csi: dict[str, Any] | None = None
    ephemeral: dict[str, Any] | None = None
    image: dict[str, Any] | None = None

    def types(self) -> list[str]:
        """The API names of the sources that are set (exactly one for a valid volume)."""
        fields = msgspec.structs.fields(self)
        return [
            f.encode_name for f in fields if f.name != "name" and getattr(self, f.name) is not None
        ]


class LocalObjectReference(_Model):
    name: str = ""


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
    automount_service_account_token: bool | None = None
    node_selector: dict[str, str] = {}
    priority: int | None = None
    enable_service_links: bool | None = None  # None: true, as the API server defaults it
    security_context: PodSecurityContext | None = None
    volumes: list[Volume] = []
    image_pull_secrets: list[LocalObjectReference] = []
    dns_policy: str | None = None
    dns_config: dict[str, Any] | None = None


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
    """A ConfigMap as the API sends it: ``binaryData`` values are base64."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    data: dict[str, str] = {}
    binary_data: dict[str, str] = {}


class ConfigMapList(_Model):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[ConfigMap] = []


class Secret(_Model):
    """A Secret as the API sends it: ``data`` values are base64 (``mobius.kube.refs`` decodes)."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    data: dict[str, str] = {}
    type: str = ""

    def __repr__(self) -> str:  # never show the values
        return f"<Secret {self.metadata.namespace}/{self.metadata.name} keys={sorted(self.data)}>"


class SecretList(_Model):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Secret] = []


class PersistentVolumeClaimSpec(_Model):
    volume_name: str = ""
    access_modes: list[str] = []
    storage_class_name: str | None = None


class PersistentVolumeClaimStatus(_Model):
    phase: str = ""  # Pending, Bound or Lost


class PersistentVolumeClaim(_Model):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PersistentVolumeClaimSpec = msgspec.field(default_factory=PersistentVolumeClaimSpec)
    status: PersistentVolumeClaimStatus = msgspec.field(default_factory=PersistentVolumeClaimStatus)


class ClaimReference(_Model):
    namespace: str = ""
    name: str = ""
    uid: str = ""


class LocalVolumeSource(_Model):
    path: str = ""


class PersistentVolumeSpec(_Model):
    """Where a PersistentVolume's data is. The sources Mobius can bind (hostPath, local) and
    the one it explains (nfs) are typed; every other source is kept raw so that the refusal can
    name it."""

    claim_ref: ClaimReference | None = None
    access_modes: list[str] = []
    host_path: HostPathVolumeSource | None = None
    local: LocalVolumeSource | None = None
    nfs: dict[str, Any] | None = None
    aws_elastic_block_store: dict[str, Any] | None = None
    azure_disk: dict[str, Any] | None = None
    azure_file: dict[str, Any] | None = None
    cephfs: dict[str, Any] | None = None
    cinder: dict[str, Any] | None = None
    csi: dict[str, Any] | None = None
    fc: dict[str, Any] | None = None
    flex_volume: dict[str, Any] | None = None
    flocker: dict[str, Any] | None = None
    gce_persistent_disk: dict[str, Any] | None = None
    glusterfs: dict[str, Any] | None = None
    iscsi: dict[str, Any] | None = None
    photon_persistent_disk: dict[str, Any] | None = None
    portworx_volume: dict[str, Any] | None = None
    quobyte: dict[str, Any] | None = None
    rbd: dict[str, Any] | None = None
    scale_io: dict[str, Any] | None = msgspec.field(default=None, name="scaleIO")
    storageos: dict[str, Any] | None = None
    vsphere_volume: dict[str, Any] | None = None

    def types(self) -> list[str]:
        """The API names of the sources that are set (exactly one for a valid volume)."""
        skip = ("claim_ref", "access_modes")
        return [
            f.encode_name
            for f in msgspec.structs.fields(self)
            if f.name not in skip and getattr(self, f.name) is not None
        ]


class PersistentVolume(_Model):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PersistentVolumeSpec = msgspec.field(default_factory=PersistentVolumeSpec)


class TokenRequestStatus(_Model):
    token: str = ""
    expiration_timestamp: str = ""


class TokenRequest(_Model):
    """The answer to ``POST .../serviceaccounts/<name>/token``; never shows the token."""

    status: TokenRequestStatus = msgspec.field(default_factory=TokenRequestStatus)

    def __repr__(self) -> str:
        return f"<TokenRequest expires={self.status.expiration_timestamp}>"


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
