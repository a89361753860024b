"""Shared base for the CRD models: camelCase on the wire, frozen, unknown fields rejected."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


def cel(
    rule: str, message: str, field_path: str | None = None, message_expression: str | None = None
) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry (checked by the apiserver at admission).

    ``message_expression`` (CEL) names the value given: the apiserver prints int-or-string
    values as ``Invalid value: ""``, so the message must say it; ``message`` stays the fallback.
    """
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if message_expression:
        entry["messageExpression"] = message_expression
    if field_path:
        entry["fieldPath"] = field_path
    return entry
