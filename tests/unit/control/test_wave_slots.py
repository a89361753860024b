"""Waves, the slot ledger under a profile's rollouts: at most the budget's Deployments in flight."""

from __future__ import annotations

from readiness.control.rollouts import Observe, Waves
from readiness.models.status import Rollout

PROFILE = ("shop", "web")


def cluster(**rollouts: tuple[int, Rollout]) -> Observe:
    """What the cache shows of each Deployment: its generation and its rollout's state."""
    return lambda name: rollouts.get(name.replace("-", "_"))


def test_a_deployment_whose_rollout_completed_takes_a_new_slot_for_its_next_change() -> None:
    """The last wave's Deployment (web-7, its generation 4 rolled out) is changed again with two
    others, budget 2: only two of the three start. It once kept its finished slot as a free
    pass, and a bad profile edit rolled out to three Deployments (seen in CI, test_waves)."""
    waves = Waves()
    observed = cluster(web_7=(4, "Complete"), web_0=(2, "Complete"), web_1=(2, "Complete"))
    assert waves.take(PROFILE, "web-7", 2, observed)
    waves.started(PROFILE, "web-7", 4)

    started = [name for name in ("web-7", "web-0", "web-1") if waves.take(PROFILE, name, 2, observed)]
    assert started == ["web-7", "web-0"]
    assert sorted(waves.in_flight(PROFILE, observed)) == ["web-0", "web-7"]


def test_a_deployment_still_rolling_keeps_its_slot_for_its_next_change() -> None:
    waves = Waves()
    observed = cluster(web_7=(4, "Progressing"), web_0=(2, "Complete"), web_1=(2, "Complete"))
    assert waves.take(PROFILE, "web-7", 2, observed)
    waves.started(PROFILE, "web-7", 4)

    started = [name for name in ("web-7", "web-0", "web-1") if waves.take(PROFILE, name, 2, observed)]
    assert started == ["web-7", "web-0"], "web-7 changes on the slot it holds; web-1 waits"
