"""Reliability statistics over many ranking sets: Krippendorff's alpha, Fleiss' kappa, a bootstrap
interval of a mean, and Bradley–Terry strengths of candidate models. Pure numbers, no Django.

Each statistic is built from parts that add up across sets, so a rollup can keep the parts and
merge them instead of reading every ranking again:

- Krippendorff's alpha reads a coincidence matrix; the matrix of many sets is the element-wise
  sum of each set's `rank_coincidences`.
- Fleiss' kappa reads a `FleissTally`; tallies `merge`.
- Bradley–Terry reads a win matrix; the matrix of many sets is the sum of theirs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from annotations.agreement import Order, order_levels

# --- Krippendorff's alpha --------------------------------------------------------------------


def value_coincidences(units: Sequence[Sequence[int]], size: int) -> list[list[float]]:
    """Krippendorff's coincidence matrix of reliability data: one list of values per unit.

    A unit's list holds the value each coder gave it (coders who gave none are simply absent);
    values run 1..size and value v is row and column v - 1. A unit with m >= 2 values adds,
    for every ordered pair of two different coders' values (c, k), 1 / (m - 1) to o[c][k]; a
    unit with one value is not pairable and adds nothing. The matrix is symmetric and its total
    is the number of pairable values.
    """
    matrix = [[0.0] * size for _ in range(size)]
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for value in values:
            if not 1 <= value <= size:
                raise ValueError(f"Value {value} is outside 1..{size}.")
        weight = 1.0 / (m - 1)
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    matrix[c - 1][k - 1] += weight
    return matrix


def order_ranks(order: Order) -> dict[int, int]:
    """Each candidate's rank in `order`, 1 = best; a tie group takes its *first* rank.

    `[[7], [3, 9], [4]]` gives 7: 1, 3: 2, 9: 2, 4: 4 (standard competition ranking, "1224").
    Mid-ranks (2.5) would not fit an integer-valued coincidence matrix, and first ranks keep
    the distance from a tie to the next group the same as in the untied order.
    """
    order_levels(order)  # validates
    ranks: dict[int, int] = {}
    position = 1
    for group in order:
        for candidate in group:
            ranks[candidate] = position
        position += len(group)
    return ranks


def rank_coincidences(orders: Sequence[Order], size: int = 9) -> list[list[float]]:
    """Krippendorff's coincidence matrix (size x size, ranks 1..size as the values; a tie group
    takes its first rank, see `order_ranks`) contributed by ONE set's orders. Additive: the
    matrix of many sets is the element-wise sum.

    The units are the set's candidates, the coders its orders, each coder's value for a
    candidate the rank they gave it. Raises ValueError when a rank exceeds `size`.
    """
    per_order = [order_ranks(order) for order in orders]
    candidates = list(dict.fromkeys(c for ranks in per_order for c in ranks))
    units = [[ranks[c] for ranks in per_order if c in ranks] for c in candidates]
    return value_coincidences(units, size)


def add_coincidences(
    total: Sequence[Sequence[float]], more: Sequence[Sequence[float]]
) -> list[list[float]]:
    """The element-wise sum of two coincidence matrices of the same size."""
    if len(total) != len(more):
        raise ValueError("Coincidence matrices of different sizes.")
    return [
        [a + b for a, b in zip(row, other, strict=True)]
        for row, other in zip(total, more, strict=True)
    ]


def krippendorff_alpha_ordinal(coincidences: Sequence[Sequence[float]]) -> float | None:
    """Ordinal alpha from a (summed) coincidence matrix; None when undefined.

    alpha = 1 - (n - 1) * sum(o_ck * d2_ck) / sum(n_c * n_k * d2_ck), with n_c the row sums,
    n the total, and the ordinal distance d2_ck = (sum of n_g for g from c to k - (n_c + n_k)
    / 2) ** 2 (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"). Undefined
    (None) with fewer than two pairable values or when every value is the same (no expected
    disagreement).
    """
    o = np.asarray(coincidences, dtype=float)
    if o.ndim != 2 or o.shape[0] != o.shape[1]:
        raise ValueError("A coincidence matrix is square.")
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if n <= 1:
        return None
    cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
    size = len(n_c)
    low = np.minimum.outer(np.arange(size), np.arange(size))
    high = np.maximum.outer(np.arange(size), np.arange(size))
    between = cumulative[high + 1] - cumulative[low]
    d2 = (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    expected = float((np.outer(n_c, n_c) * d2).sum())
    if expected <= 0:
        return None
    observed = float((o * d2).sum())
    return 1.0 - (n - 1) * observed / expected


# --- Fleiss' kappa ---------------------------------------------------------------------------


@dataclass
class FleissTally:
    """The sums Fleiss' kappa needs, additive over items, so a rollup can keep one per flag
    and merge.

    An item is one thing rated (for flags: one candidate of one set, on one flag name); its
    counts say how many raters put it in each category (for flags: [yes, no]). Items may have
    different numbers of raters: each item's agreement is (sum n_ij^2 - n_i) / (n_i (n_i - 1))
    with its own n_i, and the chance agreement comes from the pooled category shares. With the
    same number of raters everywhere this is exactly Fleiss (1971). Items with fewer than two
    raters say nothing about agreement and are skipped.
    """

    items: int = 0
    agreement_sum: float = 0.0
    category_totals: list[int] = field(default_factory=list)
    ratings: int = 0

    def add(self, counts: Sequence[int], times: int = 1) -> None:
        """Count one item (or `times` items alike): how many raters said each category."""
        if any(c < 0 for c in counts) or times < 0:
            raise ValueError("Counts cannot be negative.")
        raters = sum(counts)
        if raters < 2 or times == 0:
            return
        self.items += times
        agreement = (sum(c * c for c in counts) - raters) / (raters * (raters - 1))
        self.agreement_sum += agreement * times
        self._widen(len(counts))
        for j, c in enumerate(counts):
            self.category_totals[j] += c * times
        self.ratings += raters * times

    def merge(self, other: FleissTally) -> FleissTally:
        """A new tally holding both tallies' items."""
        merged = FleissTally(
            items=self.items + other.items,
            agreement_sum=self.agreement_sum + other.agreement_sum,
            category_totals=list(self.category_totals),
            ratings=self.ratings + other.ratings,
        )
        merged._widen(len(other.category_totals))
        for j, c in enumerate(other.category_totals):
            merged.category_totals[j] += c
        return merged

    def kappa(self) -> float | None:
        """(P - Pe) / (1 - Pe); None with no items or when every rating is one category."""
        if self.items == 0 or self.ratings == 0:
            return None
        observed = self.agreement_sum / self.items
        chance = sum((c / self.ratings) ** 2 for c in self.category_totals)
        if chance >= 1.0:
            return None
        return (observed - chance) / (1.0 - chance)

    def to_json(self) -> dict:
        return {
            "items": self.items,
            "agreement_sum": self.agreement_sum,
            "category_totals": list(self.category_totals),
            "ratings": self.ratings,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> FleissTally:
        """The tally `to_json` wrote; an empty mapping gives an empty tally."""
        totals = data.get("category_totals", [])
        if not isinstance(totals, list) or not all(isinstance(c, int) for c in totals):
            raise ValueError("category_totals must be a list of integers.")
        return cls(
            items=int(data.get("items", 0)),
            agreement_sum=float(data.get("agreement_sum", 0.0)),
            category_totals=list(totals),
            ratings=int(data.get("ratings", 0)),
        )

    def _widen(self, categories: int) -> None:
        if len(self.category_totals) < categories:
            self.category_totals.extend([0] * (categories - len(self.category_totals)))


def fleiss_kappa(items: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of items given as category counts (see `FleissTally`)."""
    tally = FleissTally()
    for counts in items:
        tally.add(counts)
    return tally.kappa()


def flag_counts(
    flags: Sequence[Mapping[str, Sequence[str]]], candidates: Sequence[int], name: str
) -> list[list[int]]:
    """[yes, no] per candidate for one flag name over one set's rankings' `flags`.

    `flags` holds each ranking's flags as stored (`{"<candidate id>": [flag names]}`); a ranking
    that did not put `name` on a candidate said no to it.
    """
    raters = len(flags)
    result = []
    for candidate in candidates:
        yes = sum(name in ranking_flags.get(str(candidate), ()) for ranking_flags in flags)
        result.append([yes, raters - yes])
    return result


# --- Bootstrap -------------------------------------------------------------------------------

_CELLS_PER_CHUNK = 4_000_000  # resamples x distinct values drawn at once, to bound memory


def bootstrap_mean_interval(
    values: Sequence[float],
    counts: Sequence[int] | None = None,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean. With `counts`, `values` are distinct values and counts
    their multiplicities (resample with a multinomial: fast for 200,000 sets with few distinct
    agreement values).

    Resampling n items with replacement is the same as drawing how many times each distinct
    value is picked from a multinomial(n, counts / n), so both forms give the same interval for
    the same seed. None when there are no values. The same seed gives the same interval.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1.")
    if resamples < 1:
        raise ValueError("resamples must be at least 1.")
    if counts is None:
        distinct, multiplicity = np.unique(np.asarray(values, dtype=float), return_counts=True)
    else:
        if len(counts) != len(values):
            raise ValueError("values and counts must have the same length.")
        if any(c < 0 for c in counts):
            raise ValueError("counts cannot be negative.")
        distinct = np.asarray(values, dtype=float)
        multiplicity = np.asarray(counts, dtype=np.int64)
    n = int(multiplicity.sum())
    if n == 0:
        return None
    shares = multiplicity / n
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // max(1, len(distinct)))
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        draws = rng.multinomial(n, shares, size=stop - start)
        means[start:stop] = draws @ distinct / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


# --- Bradley–Terry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Strength:
    """One player's Bradley–Terry log-strength (centred: the players' mean is 0) and interval."""

    name: str
    strength: float
    low: float
    high: float
    comparisons: int


def bradley_terry(
    names: Sequence[str],
    wins: Sequence[Sequence[float]],
    *,
    confidence: float = 0.95,
    iterations: int = 1000,
    tolerance: float = 1e-9,
    prior: float = 0.0,
) -> list[Strength]:
    """wins[i][j] = times names[i] beat names[j]. MM fit (Hunter 2004), log-strengths centred on 0,
    intervals from the observed information (say which), sorted strongest first.

    P(i beats j) = p_i / (p_i + p_j). The MM update is p_i <- W_i / sum_j n_ij / (p_i + p_j)
    (W_i: i's wins, n_ij: games between i and j), run until no log-strength moves by more than
    `tolerance`. The reported strength is log p_i minus the mean of the log p.

    Intervals: Wald intervals strength +- z * se, where the covariance of the centred
    log-strengths is C I^+ C, I the observed (= expected, for this model) Fisher information of
    the log-strengths at the fit, I^+ its Moore–Penrose inverse and C the centring matrix.

    The maximum-likelihood fit exists only when every player can be reached from every other by
    a chain of wins (Zermelo's condition); otherwise ValueError. `prior` > 0 always gives a
    fit: every player plays `prior` virtual wins and `prior` virtual losses against a fixed
    player of strength 1 (a shrinkage towards the middle that vanishes as games accumulate).
    """
    size = len(names)
    w = np.asarray(wins, dtype=float).reshape(size, size) if size else np.zeros((0, 0))
    if (w < 0).any():
        raise ValueError("Win counts cannot be negative.")
    if prior < 0:
        raise ValueError("prior cannot be negative.")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1.")
    if size == 0:
        return []
    if size == 1:
        return [Strength(name=names[0], strength=0.0, low=0.0, high=0.0, comparisons=0)]
    w = w.copy()
    np.fill_diagonal(w, 0.0)
    games = w + w.T
    if prior == 0 and not _strongly_connected(w > 0):
        raise ValueError(
            "Strengths are unbounded: some player never beat, or never lost to, a chain of the "
            "others. Give a prior."
        )
    won = w.sum(axis=1) + prior
    p = np.ones(size)
    for _ in range(iterations):
        denominator = (games / (p[:, None] + p[None, :])).sum(axis=1) + 2 * prior / (p + 1)
        updated = won / denominator
        if prior == 0:
            updated /= math.exp(float(np.log(updated).mean()))
        change = float(np.abs(np.log(updated) - np.log(p)).max())
        p = updated
        if change < tolerance:
            break
    theta = np.log(p)
    theta -= theta.mean()

    pair = games * np.outer(p, p) / (p[:, None] + p[None, :]) ** 2
    information = np.diag(pair.sum(axis=1) + 2 * prior * p / (p + 1) ** 2) - pair
    centring = np.eye(size) - 1.0 / size
    covariance = centring @ np.linalg.pinv(information) @ centring
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    spread = z * np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    result = [
        Strength(
            name=names[i],
            strength=float(theta[i]),
            low=float(theta[i] - spread[i]),
            high=float(theta[i] + spread[i]),
            comparisons=round(float(games[i].sum())),
        )
        for i in range(size)
    ]
    return sorted(result, key=lambda s: (-s.strength, s.name))


def _strongly_connected(beats: np.ndarray) -> bool:
    """Whether every node reaches every other along edges i -> j where beats[i][j]."""
    reach = (beats | np.eye(len(beats), dtype=bool)).astype(np.int64)
    for _ in range(len(beats).bit_length()):  # each squaring doubles the path length covered
        reach = ((reach @ reach) > 0).astype(np.int64)
    return bool(reach.all())


def win_rates(names: Sequence[str], wins: Sequence[Sequence[float]]) -> list[list[float | None]]:
    """Share of their games that names[i] won against names[j]; None with no games (and on the
    diagonal)."""
    size = len(names)
    rates: list[list[float | None]] = []
    for i in range(size):
        row: list[float | None] = []
        for j in range(size):
            played = wins[i][j] + wins[j][i] if i != j else 0
            row.append(wins[i][j] / played if played else None)
        rates.append(row)
    return rates
