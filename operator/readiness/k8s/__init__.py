"""The API edge: the only package that talks to Kubernetes."""

from .client import Cluster, KubernetesCluster, NoCredentials, ObjectRef, PodLister, load_api_client
from .errors import ApiError, FieldCause

__all__ = [
    "ApiError",
    "Cluster",
    "FieldCause",
    "KubernetesCluster",
    "NoCredentials",
    "ObjectRef",
    "PodLister",
    "load_api_client",
]
