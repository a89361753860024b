"""The simulator (tests/support/apiserver.py) keeps the apiserver's rules: what it refuses and
what it records. The engine's tables and the Twin are only as good as it is."""

from __future__ import annotations

import pytest
from tests.support.apiserver import fields_v1, paths, server_side_apply, unpaths
from tests.support.engine_table import CONTAINER_APP, KUBECTL, ctr, deployment, env


def test_the_helper_refuses_what_the_apiserver_refuses() -> None:
    body = deployment(ctr(env=[{"name": "LOG_LEVEL", "value": "debug"}]))
    apply = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "app", "env": [{"name": "LOG_LEVEL", "value": "info"}]}]}
            }
        }
    }
    with pytest.raises(AssertionError, match="kubectl-client-side-apply owns"):
        server_side_apply(body, apply, force=False)
    taken = server_side_apply(body, apply, force=True)
    assert env(taken["spec"]["template"]["spec"]["containers"][0]) == {"LOG_LEVEL": "info"}
    kubectl = next(m for m in taken["metadata"]["managedFields"] if m["manager"] == KUBECTL)
    value = (*CONTAINER_APP, "f:env", 'k:{"name":"LOG_LEVEL"}', "f:value")
    assert value not in paths(kubectl["fieldsV1"]), "forcing moves the field to us"
    assert value[:-1] in paths(kubectl["fieldsV1"]), "the item itself stays theirs too"


def test_the_fields_recorded_for_our_apply() -> None:
    apply = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"prometheus.io/scrape": "true"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [{"name": "LOG_LEVEL", "value": "info"}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                        }
                    ]
                },
            }
        }
    }
    assert fields_v1(apply, dots=False) == {
        "f:spec": {
            "f:template": {
                "f:metadata": {"f:annotations": {"f:prometheus.io/scrape": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"app"}': {
                            ".": {},
                            "f:name": {},
                            "f:env": {'k:{"name":"LOG_LEVEL"}': {".": {}, "f:name": {}, "f:value": {}}},
                            "f:readinessProbe": {"f:httpGet": {"f:path": {}, "f:port": {}}},
                        }
                    }
                },
            }
        }
    }
    owned = paths(fields_v1(apply, dots=False))
    assert unpaths(owned) == fields_v1(apply, dots=False)
    assert (*CONTAINER_APP, "f:readinessProbe", "f:httpGet", "f:path") in owned
    assert CONTAINER_APP in owned, "a list item owns itself"
