"""Kubernetes quantities as exact numbers: parsing, equality across notations, whole CPUs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from readiness.engine.quantity import QuantityError, ceil_cores, parse_quantity, same_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal(0)),
        ("1", Decimal(1)),
        (2, Decimal(2)),
        ("100m", Decimal("0.1")),
        ("0.1", Decimal("0.1")),
        ("1500m", Decimal("1.5")),
        ("250u", Decimal("0.00025")),
        ("5n", Decimal("0.000000005")),
        ("1k", Decimal(1000)),
        ("128M", Decimal(128_000_000)),
        ("1G", Decimal(10**9)),
        ("1T", Decimal(10**12)),
        ("1Ki", Decimal(1024)),
        ("128Mi", Decimal(134_217_728)),
        ("1Gi", Decimal(2**30)),
        ("2Ti", Decimal(2**41)),
        ("1Pi", Decimal(2**50)),
        ("1Ei", Decimal(2**60)),
        ("1E", Decimal(10**18)),
        ("1e3", Decimal(1000)),
        ("12E-1", Decimal("1.2")),
        ("-1", Decimal(-1)),
        ("+2", Decimal(2)),
        (" 64Mi ", Decimal(64 * 2**20)),
    ],
)
def test_parse(text: str | int, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "12 cores", "abc", "Mi", "1.2.3", ".", "1Xi", "1mi", "1KB", "0x10", "1,5", "--1", "1 Gi"],
)
def test_not_a_quantity(text: str) -> None:
    with pytest.raises(QuantityError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


def test_quantity_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="12 cores"):
        parse_quantity("12 cores")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("100m", "0.1", True),
        ("0.5", "500m", True),
        ("1Gi", "1024Mi", True),
        ("1Mi", "1024Ki", True),
        ("1G", "1000M", True),
        ("1k", "1000", True),
        (2, "2000m", True),
        (1, "1", True),
        (134217728, "128Mi", True),
        ("128Mi", "128M", False),
        ("1Gi", "1G", False),
        ("100m", "1", False),
        ("256Mi", "512Mi", False),
        # Unparseable values compare as text, never equal to a real quantity.
        ("lots", "lots", True),
        ("lots", "1", False),
        ("1", "lots", False),
    ],
)
def test_same_quantity(a: str | int, b: str | int, same: bool) -> None:
    assert same_quantity(a, b) is same
    assert same_quantity(b, a) is same


@pytest.mark.parametrize(
    ("cpu", "cores"),
    [
        ("100m", 1),
        ("1", 1),
        (1, 1),
        ("1000m", 1),
        ("1001m", 2),
        ("1500m", 2),
        ("2", 2),
        (4, 4),
        ("2.5", 3),
        ("0", 1),
        ("1n", 1),
    ],
)
def test_ceil_cores(cpu: str | int, cores: int) -> None:
    assert ceil_cores(cpu) == cores


def test_ceil_cores_rejects_a_bad_quantity() -> None:
    with pytest.raises(QuantityError):
        ceil_cores("two")
