"""Kubernetes resource quantities ("500m", "1.5Gi", 2) as numbers: compared, multiplied and written back. Pure.

Parsing is kubernetes.utils.parse_quantity (a Decimal of base units: cores, bytes). Writing back gives the short
forms people and the API server use: whole numbers plain ("8"), fractions in millis ("1500m"), and a number that was
written with a binary or decimal suffix in the largest suffix of that kind that divides it exactly ("32Gi", "4608Mi",
"4G").
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from kubernetes.utils import parse_quantity


_BINARY = [(s, Decimal(1024) ** e) for s, e in (("Ei", 6), ("Pi", 5), ("Ti", 4), ("Gi", 3), ("Mi", 2), ("Ki", 1))]
_DECIMAL = [(s, Decimal(1000) ** e) for s, e in (("E", 6), ("P", 5), ("T", 4), ("G", 3), ("M", 2), ("k", 1))]
_FRACTION = [(s, Decimal(1000) ** -e) for s, e in (("m", 1), ("u", 2), ("n", 3))]


def parse(quantity) -> Decimal:
    """The value in base units; ValueError for what is not a quantity."""
    value = parse_quantity(quantity)
    if not value.is_finite():
        raise ValueError(f"{quantity!r} is not a quantity")
    return value


def style(quantity) -> str:
    """How a quantity was written: "binary" (Ki..Ei), "decimal" (k..E) or "plain" (no suffix, m, u, n, exponent)."""
    text = str(quantity)
    if text[-2:] in {s for s, _ in _BINARY}:
        return "binary"
    if text[-1:] in {s for s, _ in _DECIMAL}:
        return "decimal"
    return "plain"


def _integral(value: Decimal) -> bool:
    return value == value.to_integral_value()


def _number(value: Decimal) -> str:
    """A Decimal as plain digits (never 1E+3), without trailing zeros after a point."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_quantity(value: Decimal, kind: str = "plain") -> str:
    """`value` (base units) as a quantity string. Whole values take the largest suffix of `kind` ("binary",
    "decimal"; none for "plain") that divides them exactly, else none; fractions the largest of m, u, n that makes
    them whole, else plain decimal digits."""
    value = Decimal(value)
    if _integral(value):
        suffixes = {"binary": _BINARY, "decimal": _DECIMAL}.get(kind, [])
        for suffix, unit in suffixes:
            if value and value % unit == 0:
                return f"{_number(value / unit)}{suffix}"
        return _number(value.to_integral_value())
    for suffix, unit in _FRACTION:
        if value % unit == 0:
            return f"{_number(value / unit)}{suffix}"
    return _number(value)


def times(quantity, n: int | Decimal) -> str:
    """`quantity` × n, written the way `quantity` was: '16Gi' × 2 = '32Gi', '1.5' × 3 = '4500m',
    '1.5Gi' × 3 = '4608Mi'."""
    return format_quantity(parse(quantity) * n, style(quantity))


def smaller(a, b):
    """Whichever of two quantities is smaller, as it was given (the first when they are equal)."""
    return b if parse(b) < parse(a) else a


def larger(a, b):
    """Whichever of two quantities is larger, as it was given (the first when they are equal)."""
    return b if parse(b) > parse(a) else a


def equal(a, b) -> bool:
    """Same amount however written ("1" and "1000m", "1.5Gi" and "1536Mi"); what is not a quantity compares as
    given."""
    try:
        return parse(a) == parse(b)
    except (ValueError, TypeError, InvalidOperation):
        return a == b
