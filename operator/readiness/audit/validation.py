"""ServiceProfiles checked as the apiserver checks them at admission, without a cluster.

One source for the rules: the pydantic models, validated strictly (the CRD's OpenAPI types do
not coerce ``"5"`` into 5), and the CEL rules (``x-kubernetes-validations``) of the CRD that is
generated from those same models, evaluated with cel-python after the CRD's defaults are
applied, as the apiserver does. The Kubernetes CEL library functions the rules use (quantities,
``replace``) are provided here. Every error names the field in the apiserver's dotted form
(``spec.probes.readiness.path``) and says what is wrong and how to put it right.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from readiness.engine.quantity import QuantityError, parse_quantity
from readiness.models import ServiceProfileSpec
from readiness.models.crd import build_crd

# The Kubernetes quantity grammar (k8s.io/apimachinery resource.ParseQuantity).
_QUANTITY = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?")
_TYPE_ERRORS = {
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "string_type": "string",
    "float_type": "number",
    "float_parsing": "number",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
}


@dataclass(frozen=True)
class FieldError:
    """One reason the apiserver would refuse the profile."""

    field: str  # spec.probes.readiness.path
    message: str  # what is wrong and what to write instead

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class RuleResult:
    """One CEL rule checked on the value it applies to."""

    field: str  # where the rule's node is in this spec (spec.probes.readiness)
    rule: str
    passed: bool
    message: str = ""  # the rule's message (or messageExpression's) when it failed
    error: str = ""  # why the rule could not be evaluated (then it neither passed nor failed)


class ProfileValidator:
    """Checks ServiceProfile specs. Build one per run: it compiles the CRD's rules once.

    ``schema`` is the CRD's OpenAPI schema of ``spec``; by default the one generated from the models.
    """

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        if schema is None:
            version = build_crd()["spec"]["versions"][0]
            schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        self._schema: Mapping[str, Any] = schema
        self._env = celpy.Environment()
        self._compiled: dict[str, celpy.Runner] = {}

    def check(self, spec: Any) -> tuple[ServiceProfileSpec | None, list[FieldError]]:
        """The model of a valid ``spec``, or None and every reason it is refused."""
        if spec is None:
            return None, [FieldError("spec", "Required value: a ServiceProfile needs a spec with a selector")]
        if not isinstance(spec, Mapping):
            return None, [FieldError("spec", f"must be of type object, not {_json_type(spec)}")]
        # As kubectl sends it: JSON (a YAML date is a string, 5.0 is 5), nulls pruned.
        data = _as_sent(spec)
        errors: list[FieldError] = []
        model: ServiceProfileSpec | None = None
        try:
            model = ServiceProfileSpec.model_validate(data, strict=True)
        except ValidationError as error:
            errors += _schema_errors(error.errors(include_url=False), data)
        outcomes = self.outcomes(data)
        typed = {e.field for e in errors}  # a value of the wrong shape: its rules say nothing more
        for outcome in outcomes:
            if not outcome.passed and not outcome.error and outcome.field not in typed:
                errors.append(FieldError(outcome.field, outcome.message))
        if not errors:  # a rule we could not evaluate on a profile nothing else refuses
            errors += [
                FieldError(o.field, f"could not check the rule `{o.rule}`: {o.error}")
                for o in outcomes
                if o.error
            ]
        return (model if not errors else None), errors

    def outcomes(self, spec: Mapping[str, Any]) -> list[RuleResult]:
        """Every CEL rule of the schema that applies to ``spec`` (defaulted first), checked."""
        found: list[RuleResult] = []
        for (path, rule), value in _rules_at(self._schema, _defaulted(self._schema, spec), "spec"):
            text = str(rule["rule"])
            field = path + str(rule.get("fieldPath") or "")
            result = self._evaluate(text, value)
            if isinstance(result, Exception) or not isinstance(result, celtypes.BoolType):
                error = str(result) if isinstance(result, Exception) else f"gave {result!r}, not a boolean"
                found.append(RuleResult(field, text, passed=False, error=error or type(result).__name__))
                continue
            if result:
                found.append(RuleResult(field, text, passed=True))
                continue
            message = str(rule.get("message") or f"failed rule: {text}")
            expression = rule.get("messageExpression")
            if expression:
                said = self._evaluate(str(expression), value)
                if isinstance(said, str) and said:
                    message = str(said)
            found.append(RuleResult(field, text, passed=False, message=message))
        return found

    def _evaluate(self, text: str, value: Any) -> Any:
        """The value of the expression ``text`` with ``self`` bound to ``value``, or the
        exception that stopped it (cel-python raises CELEvalError, and some plain errors)."""
        try:
            if text not in self._compiled:
                program = self._env.program(self._env.compile(text), functions=KUBERNETES_LIBRARY)
                self._compiled[text] = program
            return self._compiled[text].evaluate({"self": json_to_cel(value)})
        except Exception as error:
            return error


def cel_rules(schema: Mapping[str, Any], path: str = "spec") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every ``x-kubernetes-validations`` rule of a CRD schema, with the path of its node."""
    for rule in schema.get("x-kubernetes-validations") or ():
        yield path, rule
    for name, child in (schema.get("properties") or {}).items():
        yield from cel_rules(child, f"{path}.{name}")
    if isinstance(schema.get("items"), Mapping):
        yield from cel_rules(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from cel_rules(schema["additionalProperties"], f"{path}[*]")


def _rules_at(
    schema: Mapping[str, Any], value: Any, path: str
) -> Iterator[tuple[tuple[str, Mapping[str, Any]], Any]]:
    """Each rule with the value it applies to: rules of a node are checked where the node is set."""
    for rule in schema.get("x-kubernetes-validations") or ():
        yield (path, rule), value
    if isinstance(value, Mapping):
        for name, child in (schema.get("properties") or {}).items():
            if name in value:
                yield from _rules_at(child, value[name], f"{path}.{name}")
        if isinstance(schema.get("additionalProperties"), Mapping):
            for name, child_value in value.items():
                yield from _rules_at(schema["additionalProperties"], child_value, f"{path}[{name}]")
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from _rules_at(schema["items"], item, f"{path}[{index}]")


def _defaulted(schema: Mapping[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in where it leaves a field out (the apiserver
    defaults before it validates)."""
    if isinstance(value, Mapping) and "properties" in schema:
        out = dict(value)
        for name, child in schema["properties"].items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = _defaulted(child, out[name])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_defaulted(schema["items"], item) for item in value]
    return value


def _as_sent(value: Any) -> Any:
    def integral(number: float) -> int | float:
        return int(number) if number.is_integer() else number

    def prune(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: prune(v) for k, v in node.items() if v is not None}
        if isinstance(node, list):
            return [prune(item) for item in node]
        return node

    return prune(json.loads(json.dumps(value, default=str), parse_float=lambda s: integral(float(s))))


# ---- the Kubernetes CEL library, as far as the CRD's rules use it ----


class Quantity:
    """A Kubernetes quantity inside CEL (``quantity('128Mi')``)."""

    def __init__(self, value: Decimal) -> None:
        self.value = value


def _parse(text: Any) -> Decimal | None:
    if not isinstance(text, str) or not _QUANTITY.fullmatch(text):
        return None
    try:
        return parse_quantity(text)
    except QuantityError:
        return None


def _is_quantity(text: Any) -> celtypes.BoolType:
    return celtypes.BoolType(_parse(text) is not None)


def _quantity(text: Any) -> Quantity | CELEvalError:
    parsed = _parse(text)
    if parsed is None:
        return CELEvalError(f"quantity: {text!r} is not a Kubernetes quantity")
    return Quantity(parsed)


def _compare(a: Any, b: Any) -> int:
    if not isinstance(a, Quantity) or not isinstance(b, Quantity):
        raise TypeError("compareTo, isLessThan and isGreaterThan take quantities")
    return (a.value > b.value) - (a.value < b.value)


def _replace(text: Any, old: Any, new: Any, limit: Any = -1) -> celtypes.StringType:
    return celtypes.StringType(str(text).replace(str(old), str(new), int(limit)))


KUBERNETES_LIBRARY: dict[str, Callable[..., Any]] = {
    "isQuantity": _is_quantity,
    "quantity": _quantity,
    "compareTo": lambda a, b: celtypes.IntType(_compare(a, b)),
    "isLessThan": lambda a, b: celtypes.BoolType(_compare(a, b) < 0),
    "isGreaterThan": lambda a, b: celtypes.BoolType(_compare(a, b) > 0),
    "replace": _replace,
}


# ---- the schema's errors, as the apiserver words them ----


def _schema_errors(details: list[ErrorDetails], data: Mapping[str, Any]) -> list[FieldError]:
    by_field: dict[str, list[ErrorDetails]] = {}
    for detail in details:
        by_field.setdefault(_field(detail, data), []).append(detail)
    out: list[FieldError] = []
    for field, found in by_field.items():
        types = [_TYPE_ERRORS[d["type"]] for d in found if d["type"] in _TYPE_ERRORS]
        if len(found) > 1 and len(types) == len(found):  # every branch of `int | str` failed
            wanted = " or ".join(dict.fromkeys(types))
            out.append(FieldError(field, f"must be of type {wanted}, not {_describe(found[0]['input'])}"))
            continue
        for detail in found:
            error = FieldError(field, _message(field, detail))
            if error not in out:
                out.append(error)
    return out


def _field(detail: ErrorDetails, data: Any) -> str:
    """The error's location as a path into the data (pydantic adds union branches to it)."""
    field, node = "spec", data
    loc = detail["loc"]
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(node, Mapping) and isinstance(part, str) and part in node:
            field, node = f"{field}.{part}", node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            field, node = f"{field}[{part}]", node[part]
        elif last and detail["type"] == "missing" and isinstance(part, str):
            field = f"{field}.{part}"
    return field


def _message(field: str, detail: ErrorDetails) -> str:
    kind, ctx, given = detail["type"], detail.get("ctx") or {}, detail["input"]
    if kind == "missing":
        return (
            "Required value: set it (`kubectl explain serviceprofile." + _explain(field) + "` describes it)"
        )
    if kind == "extra_forbidden":
        parent = _explain(field.rsplit(".", 1)[0])
        return f'unknown field "{field}": remove it or correct its name (`kubectl explain serviceprofile.{parent}` lists the fields)'
    if kind == "literal_error":
        supported = ", ".join(f'"{v}"' for v in re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return f"Unsupported value: {json.dumps(given)}: supported values: {supported}"
    if kind in _TYPE_ERRORS:
        return f"must be of type {_TYPE_ERRORS[kind]}, not {_describe(given)}"
    bounds = {
        "greater_than_equal": ("greater than or equal to", "ge"),
        "less_than_equal": ("less than or equal to", "le"),
        "greater_than": ("greater than", "gt"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"should be {words} {_number(ctx.get(key))}, not {json.dumps(given)}"
    if kind == "string_too_short":
        return f"should be at least {ctx.get('min_length')} chars long, not {json.dumps(given)}"
    if kind == "string_too_long":
        return f"Too long: may not be more than {ctx.get('max_length')} characters (this one has {len(str(given))})"
    if kind == "string_pattern_mismatch":
        return f"should match '{ctx.get('pattern')}', not {json.dumps(given)}"
    if kind == "too_short":
        return f"should have at least {ctx.get('min_length')} items"
    if kind == "too_long":
        return f"Too many: may not have more than {ctx.get('max_length')} items"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return str(detail["msg"])


def _number(value: Any) -> Any:
    """1.0 as the apiserver prints it: 1."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _explain(field: str) -> str:
    """The field as ``kubectl explain`` takes it: no list indices."""
    return re.sub(r"\[[^\]]*\]", "", field)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe(value: Any) -> str:
    kind = _json_type(value)
    return f"{kind} {json.dumps(value)}" if kind in ("string", "integer", "number", "boolean") else kind
