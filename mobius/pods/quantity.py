"""Kubernetes resource quantities ("500m", "1.5", "128Mi", "1G") as numbers."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from mobius.errors import InvalidPodSpec

_SUFFIX: dict[str, int | Decimal] = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def parse_quantity(text: str, *, field: str) -> Decimal:
    """The value of a quantity string; InvalidPodSpec naming ``field`` if it is not one."""
    s = text.strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if s.endswith(suffix) and s[: -len(suffix)]:
            number, factor = s[: -len(suffix)], Decimal(_SUFFIX[suffix])
            break
    else:
        number, factor = s, Decimal(1)
    try:
        value = Decimal(number) * factor
    except InvalidOperation:
        raise InvalidPodSpec(field, f"{text!r} is not a quantity (e.g. 500m, 2, 128Mi)") from None
    if not value.is_finite() or value < 0:
        raise InvalidPodSpec(field, f"{text!r} must be a finite, non-negative quantity")
    return value


def cpus(text: str, *, field: str) -> int:
    """Whole CPUs for Slurm: fractions round up (500m -> 1)."""
    return max(1, math.ceil(parse_quantity(text, field=field)))


def megabytes(text: str, *, field: str) -> int:
    """Memory in MiB for ``sbatch --mem``, rounded up."""
    return max(1, math.ceil(parse_quantity(text, field=field) / (1024**2)))
