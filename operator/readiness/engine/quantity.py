"""Kubernetes resource quantities as exact numbers (the engine may not import a client)."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_PATTERN = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


class QuantityError(ValueError):
    """Not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Decimal:
    """``"100m"`` -> ``Decimal("0.1")``, ``"128Mi"`` -> ``Decimal(134217728)``."""
    text = str(value).strip()
    match = _PATTERN.match(text)
    if not match or match.group(2) not in _SUFFIX:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as error:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity") from error
    return number * _SUFFIX[match.group(2)]


def same_quantity(a: object, b: object) -> bool:
    """Equal as quantities (``"0.5"`` == ``"500m"``); unparseable values compare as text."""
    try:
        return parse_quantity(str(a)) == parse_quantity(str(b))
    except QuantityError:
        return str(a) == str(b)


def ceil_cores(value: str | int) -> int:
    """Whole CPUs for GOMAXPROCS: a CPU quantity rounded up, at least 1."""
    return max(1, math.ceil(parse_quantity(value)))
