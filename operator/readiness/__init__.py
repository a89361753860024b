"""readiness-operator: makes Deployments production-ready and keeps them so."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("readiness-operator")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

API_GROUP = "readiness.dev"
API_VERSION = "v1alpha1"
KIND = "ServiceProfile"
PLURAL = "serviceprofiles"
FIELD_MANAGER = "readiness-operator"
# Puts a failed rollout's previous pod template back; another manager, so the fields it restores
# stay the team's in every later decision.
REVERT_MANAGER = "readiness-operator-revert"
