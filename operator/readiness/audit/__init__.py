"""`readiness audit`: the engine on manifests before they reach a cluster (files read, profiles checked as the apiserver checks them, verdicts reported as text, JSON or SARIF)."""
