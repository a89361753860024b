"""The API edge: the only package that talks to Kubernetes."""

from .client import Cluster, KubernetesCluster, ObjectRef, load_api_client
from .errors import ApiError, FieldCause

__all__ = ["ApiError", "Cluster", "FieldCause", "KubernetesCluster", "ObjectRef", "load_api_client"]
