"""The webhook's decision, pure: an AdmissionReview request in, the object to store out (kopf
computes the JSON patch from it), and the reconciler's engine finding that object compliant."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.support.admission import FULL, deployment, request

from readiness.engine import DeploymentView, evaluate
from readiness.engine.mutation import ADMITTED, Candidate, admit, held_by, merge
from readiness.models import ServiceProfileSpec

SELECT = {"selector": {"matchLabels": {"app": "api"}}}


def profiles(**by_name: dict[str, Any]) -> dict[str, Candidate]:
    return {
        name: Candidate(generation=3, spec=ServiceProfileSpec.model_validate({**SELECT, **sections}))
        for name, sections in by_name.items()
    }


def stored(obj: dict[str, Any]) -> DeploymentView:
    """What the reconciler sees once the object is stored: the webhook's fields belong to nobody."""
    return DeploymentView.from_body({**obj, "metadata": {**obj["metadata"], "namespace": "shop"}})


def test_a_new_deployment_is_stored_compliant_and_the_reconciler_has_nothing_to_write() -> None:
    profs = profiles(api=FULL)
    obj = deployment()
    admission = admit(request(obj), profs)
    assert admission.outcome == "Mutated"
    assert admission.profile == "api"
    assert admission.checks == (
        "probes.liveness",
        "probes.readiness",
        "resources.requests.cpu",
        "resources.requests.memory",
        "resources.limits.memory",
        "shutdown.prestop",
        "tracing.env",
        "logging.env",
        "shutdown.grace",
        "metrics.annotations",
    )
    assert admission.obj is not None
    assert obj == deployment(), "the request's object is left as it came"
    app = admission.obj["spec"]["template"]["spec"]["containers"][0]
    assert app["readinessProbe"] == {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5}
    assert app["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    assert admission.obj["metadata"]["annotations"][ADMITTED] == "api@3: " + ", ".join(admission.checks)
    assert admission.message.startswith("ServiceProfile api set probes.liveness, probes.readiness")
    verdict = evaluate(profs["api"].spec, stored(dict(admission.obj)))
    assert verdict.compliant
    assert verdict.apply is None


def test_mutating_the_mutated_object_changes_nothing() -> None:
    profs = profiles(api=FULL)
    first = admit(request(deployment()), profs)
    assert first.obj is not None
    again = admit(request(dict(first.obj)), profs)
    assert (again.outcome, again.reason, again.obj) == ("Compliant", "compliant", None)


def test_a_dry_run_is_answered_exactly_as_the_real_request() -> None:
    profs = profiles(api=FULL)
    assert admit(request(deployment(), dryRun=True), profs) == admit(request(deployment()), profs)


def test_under_report_a_value_the_request_sets_is_the_teams() -> None:
    profs = profiles(api={"probes": FULL["probes"], "logging": {"level": "info"}})
    obj = deployment(
        readinessProbe={"httpGet": {"path": "/mine", "port": 8080}},
        env=[{"name": "LOG_LEVEL", "value": "debug"}],
    )
    admission = admit(request(obj), profs)
    assert admission.outcome == "Mutated"
    assert admission.checks == ("probes.liveness",)
    assert admission.obj is not None
    app = admission.obj["spec"]["template"]["spec"]["containers"][0]
    assert app["readinessProbe"] == {"httpGet": {"path": "/mine", "port": 8080}}
    assert app["env"] == [{"name": "LOG_LEVEL", "value": "debug"}]
    assert "livenessProbe" in app
    # The reconciler keeps them the same way: Conflicted on those fields, nothing to apply.
    verdict = evaluate(profs["api"].spec, stored(dict(admission.obj)))
    assert verdict.apply is None
    assert {c.manager for c in verdict.conflicts} == {"kubectl-create"}


def test_under_force_the_profiles_value_wins() -> None:
    profs = profiles(api={"conflictPolicy": "Force", "probes": FULL["probes"], "logging": {"level": "info"}})
    obj = deployment(
        readinessProbe={"httpGet": {"path": "/mine", "port": 8080}},
        env=[{"name": "LOG_LEVEL", "value": "debug"}],
    )
    admission = admit(request(obj), profs)
    assert admission.outcome == "Mutated"
    assert admission.checks == ("probes.liveness", "probes.readiness", "logging.env")
    assert admission.obj is not None
    app = admission.obj["spec"]["template"]["spec"]["containers"][0]
    assert app["readinessProbe"] == {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5}
    assert app["env"] == [{"name": "LOG_LEVEL", "value": "info"}]


def test_a_variable_defined_twice_is_judged_and_set_by_its_last_definition() -> None:
    """The pod takes the last definition: a first one that matches the profile is no pass."""
    twice = [{"name": "LOG_LEVEL", "value": "info"}, {"name": "LOG_LEVEL", "value": "warn"}]
    forced = profiles(api={"conflictPolicy": "Force", "logging": {"level": "info"}})
    admission = admit(request(deployment(env=twice)), forced)
    assert admission.outcome == "Mutated"
    assert admission.obj is not None
    app = admission.obj["spec"]["template"]["spec"]["containers"][0]
    assert app["env"][-1] == {"name": "LOG_LEVEL", "value": "info"}
    assert admit(request(dict(admission.obj)), forced).outcome == "Compliant", "and it stays so"
    reported = profiles(api={"logging": {"level": "info"}})  # Report: the team's definitions stand
    assert admit(request(deployment(env=twice)), reported).outcome == "Compliant"
    assert admit(request(deployment(env=twice)), reported).reason == "conflicted"


def test_an_audit_profile_never_mutates() -> None:
    admission = admit(request(deployment()), profiles(api={"mode": "Audit", **FULL}))
    assert (admission.outcome, admission.reason, admission.profile, admission.obj) == (
        "Skipped",
        "audit",
        "api",
        None,
    )


def test_a_deployment_two_profiles_select_is_never_mutated() -> None:
    admission = admit(request(deployment()), profiles(api=FULL, other={"logging": {"level": "info"}}))
    assert (admission.outcome, admission.reason, admission.obj) == ("Skipped", "ambiguous", None)


def test_no_profile_no_change() -> None:
    admission = admit(request(deployment()), {})
    assert (admission.outcome, admission.reason) == ("Skipped", "no-profile")


def test_a_profile_that_cannot_apply_is_left_to_the_reconcilers_status() -> None:
    admission = admit(
        request(deployment()), profiles(api={"probes": {"port": "grpc-port", "readiness": {"type": "grpc"}}})
    )
    assert (admission.outcome, admission.reason) == ("Skipped", "invalid")


def test_an_update_that_changes_the_pod_template_keeps_the_profiles_fields() -> None:
    profs = profiles(api=FULL)
    created = admit(request(deployment()), profs).obj
    assert created is not None
    # The team's next apply (client-side) carries only what it wrote, and a new image.
    new = copy.deepcopy(dict(created))
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "api:2"
    assert admit(request(new, "UPDATE", oldObject=created), profs).outcome == "Compliant"
    # A team's template that dropped them gets them back, on the same rollout.
    bare = deployment(image="api:2")
    bare["metadata"]["annotations"] = dict(created["metadata"]["annotations"])
    again = admit(request(bare, "UPDATE", oldObject=created), profs)
    assert again.outcome == "Mutated"
    assert again.obj is not None
    assert again.obj["spec"]["template"] == {
        **created["spec"]["template"],
        "spec": {
            **created["spec"]["template"]["spec"],
            "containers": [{**created["spec"]["template"]["spec"]["containers"][0], "image": "api:2"}],
        },
    }


def test_an_update_that_leaves_the_pod_template_alone_is_not_mutated() -> None:
    obj = deployment()
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 3
    admission = admit(request(scaled, "UPDATE", oldObject=obj), profiles(api=FULL))
    assert (admission.outcome, admission.reason) == ("Skipped", "template-unchanged")


@pytest.mark.parametrize("manager", ["readiness-operator", "readiness-operator-revert"])
def test_the_operators_own_writes_land_as_sent(manager: str) -> None:
    old = deployment()
    new = deployment(image="api:0")
    admission = admit(
        request(new, "UPDATE", oldObject=old, options={"fieldManager": manager}), profiles(api=FULL)
    )
    assert (admission.outcome, admission.reason) == ("Skipped", "own-write")


def test_a_deployment_without_a_name_yet_is_left_to_the_reconciler() -> None:
    obj = deployment()
    obj["metadata"] = {"generateName": "api-", "labels": {"app": "api"}}
    assert admit(request(obj), profiles(api=FULL)).reason == "no-name"


def test_a_request_without_managed_fields_is_held_by_its_requester() -> None:
    obj = deployment(readinessProbe={"httpGet": {"path": "/mine", "port": 8080}})
    del obj["metadata"]["managedFields"]
    admission = admit(request(obj), profiles(api={"probes": FULL["probes"]}))
    assert admission.checks == ("probes.liveness",)
    entry = held_by("alice", obj)
    assert entry["manager"] == "alice"
    fields = entry["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {"f:app": {}}}
    app = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert app["f:readinessProbe"] == {"f:httpGet": {"f:path": {}, "f:port": {}}}
    assert app["f:ports"]['k:{"name":"http"}'] == {".": {}, "f:name": {}, "f:containerPort": {}}


def test_setting_one_handler_or_env_form_drops_the_others() -> None:
    target: dict[str, Any] = {
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
        "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    }
    merge(
        target,
        {
            "readinessProbe": {"httpGet": {"path": "/r", "port": 8080}},
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        },
    )
    assert target == {
        "readinessProbe": {"httpGet": {"path": "/r", "port": 8080}, "periodSeconds": 5},
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    }
