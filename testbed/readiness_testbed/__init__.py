"""The project's local Kubernetes control plane, built from Go modules (no Docker needed)."""

from .binaries import cache_root, ensure_binaries
from .cluster import Testbed, TestbedError

__all__ = ["Testbed", "TestbedError", "cache_root", "ensure_binaries"]
