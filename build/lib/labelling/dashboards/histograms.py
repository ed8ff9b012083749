"""Fixed-bin histograms the rollups keep (so medians and percentiles add up across days and
trainers), and quantiles read back from them. Pure numbers, no Django.

A histogram is a list of counts, one per bin of its edges: bin i holds values v with
edges[i] <= v < edges[i + 1]; the last bin holds everything from edges[-1] up.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence

# Seconds a task took (assigned to done): fine where most tasks are, coarse in the tail.
TASK_SECONDS_EDGES = (
    0, 5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 90, 120, 150, 180, 240, 300, 420, 600, 900,
    1200, 1800, 2700, 3600, 7200,
)  # fmt: skip
# Seconds a generation request took from queued to finished.
GENERATION_SECONDS_EDGES = (
    0, 0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800,
)  # fmt: skip
# Characters changed between a model draft and the turn a trainer submitted.
EDIT_DISTANCE_EDGES = (0, 1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# Length difference, in characters, between the two replies of a ranked pair.
LENGTH_EDGES = (1, 50, 100, 200, 400, 800, 1600)


def empty(edges: Sequence[float]) -> list[int]:
    return [0] * len(edges)


def bin_index(edges: Sequence[float], value: float) -> int:
    """The bin of `value` (values under edges[0] go to the first bin)."""
    return max(bisect_right(edges, value) - 1, 0)


def add_value(counts: list[int], edges: Sequence[float], value: float) -> None:
    counts[bin_index(edges, value)] += 1


def histogram(edges: Sequence[float], values: Iterable[float]) -> list[int]:
    counts = empty(edges)
    for value in values:
        add_value(counts, edges, value)
    return counts


def add_counts(total: list[int], more: Sequence[int]) -> list[int]:
    """`total` plus `more`, bin by bin (a shorter `total` is widened); returns `total`."""
    if len(total) < len(more):
        total.extend([0] * (len(more) - len(total)))
    for index, count in enumerate(more):
        total[index] += count
    return total


def quantile(counts: Sequence[int], edges: Sequence[float], q: float) -> float | None:
    """The q-quantile, interpolated linearly inside its bin; None with no values.

    The open last bin has no upper edge: a quantile that falls there is reported as its lower
    edge (a floor: "at least this").
    """
    if not 0 <= q <= 1:
        raise ValueError("q must lie in [0, 1].")
    total = sum(counts)
    if total == 0:
        return None
    target = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= target:
            low = edges[index]
            if index + 1 >= len(edges):
                return float(low)
            high = edges[index + 1]
            return float(low + (high - low) * (target - seen) / count)
        seen += count
    return float(edges[-1])


def bucket_labels(edges: Sequence[float], unit: str = "") -> list[str]:
    """'1–49', '50–99', ..., '1600+' for integer edges."""
    labels = []
    for index, low in enumerate(edges):
        if index + 1 < len(edges):
            labels.append(f"{low:g}–{edges[index + 1] - 1:g}{unit}")
        else:
            labels.append(f"{low:g}+{unit}")
    return labels
