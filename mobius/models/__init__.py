"""msgspec Structs for the Kubernetes objects Mobius reads.

They carry only the fields Mobius uses; unknown fields of the API are ignored, never forbidden.
Decoders are built once at import.
"""

from mobius.models.core import (
    Container,
    ContainerPort,
    EnvVar,
    ListMeta,
    ObjectMeta,
    OwnerReference,
    Pod,
    PodList,
    PodSpec,
    PodStatus,
    ResourceRequirements,
    WatchEvent,
)

__all__ = [
    "Container",
    "ContainerPort",
    "EnvVar",
    "ListMeta",
    "ObjectMeta",
    "OwnerReference",
    "Pod",
    "PodList",
    "PodSpec",
    "PodStatus",
    "ResourceRequirements",
    "WatchEvent",
]
