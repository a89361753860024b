"""Label selector matching (metav1.LabelSelector semantics)."""

from __future__ import annotations

from collections.abc import Mapping

from ..models.profile import LabelSelector


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """True when ``labels`` satisfy every matchLabels entry and every expression.

    An empty selector matches nothing: admission rejects it, and the engine agrees.
    """
    if not selector.match_labels and not selector.match_expressions:
        return False
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        op = requirement.operator
        if op == "In" and (not present or value not in requirement.values):
            return False
        if op == "NotIn" and present and value in requirement.values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
