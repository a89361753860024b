"""The project's local Kubernetes control plane, built from Go modules (no Docker needed), with
kwok's fake nodes and, where the machine can run one, a real node (``real-0``)."""

from .binaries import cache_root, ensure_binaries, ensure_node_binaries
from .cluster import Testbed, TestbedError
from .node import NODE_LABEL, NODE_NAME, NODE_TAINT, POD_SUBNET, RealNode

__all__ = [
    "NODE_LABEL",
    "NODE_NAME",
    "NODE_TAINT",
    "POD_SUBNET",
    "RealNode",
    "Testbed",
    "TestbedError",
    "cache_root",
    "ensure_binaries",
    "ensure_node_binaries",
]
