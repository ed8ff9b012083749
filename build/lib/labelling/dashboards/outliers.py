"""Which trainers stand far from the rest on one figure: robust z-scores (median and MAD), so
one very bad trainer does not hide by moving the mean. Pure numbers, no Django."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from statistics import median

# A trainer is highlighted at this many robust standard deviations from the median.
THRESHOLD = 2.5
# 1.4826 * MAD estimates the standard deviation of normal data.
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Rule:
    """`low`: highlight values far below the rest (else far above). `floor` is the smallest
    spread used, so that near-identical trainers do not make a tiny difference look huge."""

    name: str
    low: bool
    floor: float
    reason: str  # with {value} and {median}


def robust_z(values: Mapping[object, float], floor: float) -> dict[object, float]:
    """Each value's distance from the median in robust standard deviations (MAD-based)."""
    if len(values) < 3:
        return {key: 0.0 for key in values}
    middle = median(values.values())
    spread = MAD_SCALE * median(abs(value - middle) for value in values.values())
    spread = max(spread, floor)
    return {key: (value - middle) / spread for key, value in values.items()}


def outliers(values: Mapping[object, float], rule: Rule) -> dict[object, str]:
    """The keys far from the rest on this figure, each with the reason in words."""
    if len(values) < 3:
        return {}
    middle = median(values.values())
    found = {}
    for key, z in robust_z(values, rule.floor).items():
        if (rule.low and z <= -THRESHOLD) or (not rule.low and z >= THRESHOLD):
            found[key] = rule.reason.format(value=values[key], median=middle)
    return found
