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


class EnvVar(_Model):
    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


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
    ports: list[ContainerPort] = []
    resources: ResourceRequirements = msgspec.field(default_factory=ResourceRequirements)
    image_pull_policy: str | None = None
    tty: bool = False
    stdin: bool = False


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


class PodStatus(_Model):
    phase: str = ""
    reason: str | None = None
    message: str | None = None
    pod_ip: str | None = None
    host_ip: str | None = None
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


class WatchEvent(_Model):
    """One line of a watch stream. ``object`` stays raw: its kind depends on ``type``."""

    type: str
    object: msgspec.Raw
