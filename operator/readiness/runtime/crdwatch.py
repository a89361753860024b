"""The ServiceProfile CRD's comings and goings, as the probes report them."""

from __future__ import annotations

from readiness import API_GROUP


class CrdWatch:
    """What the ServiceProfile CRD's comings and goings mean for the probes.

    kopf starts serving a CRD created after it started only if the apiserver's discovery already
    lists it when the CRD's own events arrive; it often does not yet, and kopf does not look
    again (seen on Kubernetes 1.34 with kopf 1.45). So once the CRD has been missing and is back,
    /readyz and /healthz say so and the liveness probe restarts the operator, which then serves
    it: a few seconds, instead of an operator that looks ready and serves nothing.
    """

    def __init__(self) -> None:
        self._missing = False  # seen missing since start-up
        self._returned = False  # and established again since

    def observe(self, established: bool) -> str | None:
        """The readiness verdict for one look at the CRD."""
        if not established:
            self._missing = True
            return f"CRD serviceprofiles.{API_GROUP} is not installed or not established"
        self._returned = self._returned or self._missing
        return self.liveness()

    def liveness(self) -> str | None:
        return RECREATED if self._returned else None


RECREATED = (
    f"CRD serviceprofiles.{API_GROUP} appeared after the operator started: restart to serve it "
    "(the liveness probe does)"
)
