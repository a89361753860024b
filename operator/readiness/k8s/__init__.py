"""The API edge: the only package that talks to Kubernetes."""

from .client import (
    Cluster,
    KubernetesCluster,
    NoCredentials,
    ObjectRef,
    PodLister,
    load_configuration,
)
from .errors import ApiError, FieldCause
from .transport import Transport
from .watch import DeploymentStream, Event

__all__ = [
    "ApiError",
    "Cluster",
    "DeploymentStream",
    "Event",
    "FieldCause",
    "KubernetesCluster",
    "NoCredentials",
    "ObjectRef",
    "PodLister",
    "Transport",
    "load_configuration",
]
