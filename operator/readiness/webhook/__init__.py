"""The mutating admission webhook: Deployments stored compliant from their first pod, with the engine's own decision; its registration and the local webhook's throw-away certificates."""
