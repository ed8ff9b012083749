"""Agreement and consensus maths over rankings: pure functions of orders, no Django.

An *order* is one trainer's ranking of a set's candidates: a list of groups of candidate ids,
best first. A group of two or more ids is a tie. `[[7], [3, 9], [4]]` says 7 is best, 3 and 9
are tied, 4 is worst.

Definitions used throughout:

- The *relation* of a and b in an order is +1 (a above b), -1 (a below b) or 0 (same group).
- Pairwise measures compare two orders on the unordered pairs {a, b} of the ids both orders
  contain (a set's rankings normally all cover the same K candidates).
- `kendall_tau` is Kendall's tau-b, which corrects for ties. It is undefined (0 / 0) for two
  orders when either one puts every shared candidate in a single group; such trainer pairs are
  left out of the mean rather than counted as 0, since "no order given" is not "uncorrelated".
  When every trainer pair is undefined the result is None.
- `consensus_order` is Tideman's ranked pairs, returned as a topological layering of the locked
  pairs (see its docstring for the tie-breaks and what ends up tied).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

Order = Sequence[Sequence[int]]


def order_levels(order: Order) -> dict[int, int]:
    """Each id's group index in `order` (0 = best); raises ValueError on an id given twice."""
    levels: dict[int, int] = {}
    for level, group in enumerate(order):
        for candidate in group:
            if candidate in levels:
                raise ValueError(f"Candidate {candidate} appears twice in one order.")
            levels[candidate] = level
    return levels


def pairs_from_order(order: Order) -> list[tuple[int, int]]:
    """The strict (winner, loser) pairs one order implies; tied candidates give no pair.

    Pairs come best winner first, then in the order ids appear. An untied order of K candidates
    gives K * (K - 1) / 2 pairs.
    """
    order_levels(order)  # validates
    groups = [list(group) for group in order if group]
    return [
        (winner, loser)
        for i, upper in enumerate(groups)
        for lower in groups[i + 1 :]
        for winner in upper
        for loser in lower
    ]


def pair_relation(order: Order, a: int, b: int) -> int:
    """+1 when `order` puts a above b, -1 when below, 0 when they are tied."""
    levels = order_levels(order)
    return _relation(levels, a, b)


def _relation(levels: dict[int, int], a: int, b: int) -> int:
    try:
        level_a, level_b = levels[a], levels[b]
    except KeyError as exc:
        raise ValueError(f"Candidate {exc.args[0]} is not in the order.") from None
    return (level_a < level_b) - (level_a > level_b)


def _shared_pairs(x: dict[int, int], y: dict[int, int]) -> list[tuple[int, int]]:
    shared = sorted(x.keys() & y.keys())
    return list(combinations(shared, 2))


def _trainer_pairs(orders: Sequence[Order]) -> Iterable[tuple[dict[int, int], dict[int, int]]]:
    levels = [order_levels(order) for order in orders]
    return combinations(levels, 2)


def pairwise_agreement(orders: Sequence[Order]) -> float | None:
    """Mean over trainer pairs of the share of candidate pairs on which they agree.

    Two trainers agree on {a, b} when their relations are equal: both a above b, both a below
    b, or both tied. None with fewer than two orders (or no two orders sharing two candidates).
    """
    scores: list[float] = []
    for x, y in _trainer_pairs(orders):
        pairs = _shared_pairs(x, y)
        if not pairs:
            continue
        same = sum(_relation(x, a, b) == _relation(y, a, b) for a, b in pairs)
        scores.append(same / len(pairs))
    return sum(scores) / len(scores) if scores else None


def kendall_tau_b(x: Order, y: Order) -> float | None:
    """Kendall's tau-b of two orders over their shared candidates; None where undefined.

    tau_b = (concordant - discordant) / sqrt((n0 - n1) * (n0 - n2)), with n0 the candidate
    pairs, n1 the pairs tied in x and n2 the pairs tied in y. A pair tied in either order is
    neither concordant nor discordant. Undefined (None) when either order ties everything.
    """
    levels_x, levels_y = order_levels(x), order_levels(y)
    pairs = _shared_pairs(levels_x, levels_y)
    concordant = discordant = tied_x = tied_y = 0
    for a, b in pairs:
        rx, ry = _relation(levels_x, a, b), _relation(levels_y, a, b)
        tied_x += rx == 0
        tied_y += ry == 0
        concordant += rx * ry > 0
        discordant += rx * ry < 0
    denominator = (len(pairs) - tied_x) * (len(pairs) - tied_y)
    if denominator == 0:
        return None
    return (concordant - discordant) / math.sqrt(denominator)


def kendall_tau(orders: Sequence[Order]) -> float | None:
    """Mean tau-b over trainer pairs; pairs where tau-b is undefined are left out.

    None with fewer than two orders, or when no trainer pair has a defined tau-b (every order
    but at most one is a single tie group).
    """
    taus = [tau for x, y in combinations(orders, 2) if (tau := kendall_tau_b(x, y)) is not None]
    return sum(taus) / len(taus) if taus else None


def _unique(candidates: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(candidates))


def pair_votes(orders: Sequence[Order], candidates: Sequence[int]) -> dict[tuple[int, int], int]:
    """For every ordered pair (a, b) of distinct candidates, how many orders put a above b.

    Ids outside `candidates` are ignored; an order that lacks a or b casts no vote on them.
    """
    ids = _unique(candidates)
    votes = {(a, b): 0 for a in ids for b in ids if a != b}
    for order in orders:
        levels = order_levels(order)
        present = [c for c in ids if c in levels]
        for a, b in combinations(present, 2):
            relation = _relation(levels, a, b)
            if relation > 0:
                votes[(a, b)] += 1
            elif relation < 0:
                votes[(b, a)] += 1
    return votes


def pair_margins(orders: Sequence[Order], candidates: Sequence[int]) -> dict[tuple[int, int], int]:
    """For every ordered pair (a, b) of distinct candidates: votes a > b minus votes b > a.

    Both directions are present, so margins[(a, b)] == -margins[(b, a)]; a preference export
    can read the margin of (chosen, rejected) directly.
    """
    votes = pair_votes(orders, candidates)
    return {(a, b): count - votes[(b, a)] for (a, b), count in votes.items()}


def consensus_order(orders: Sequence[Order], candidates: Sequence[int]) -> list[list[int]]:
    """The consensus of `orders` over `candidates` by ranked pairs (Tideman), as groups.

    1. Count, for each pair, the orders that put a above b (ties count for neither side).
    2. Every pair with a strict majority, a over b, is a *majority pair*; pairs whose votes are
       exactly equal (including 0 to 0) give none.
    3. Lock majority pairs strongest first: larger margin first, then larger winning vote count,
       then by (winner id, loser id) ascending so the result never depends on input order. A
       pair that would close a cycle with pairs already locked is skipped; this is how a
       Condorcet cycle (rock-paper-scissors) is broken, at its weakest link.
    4. Layer the locked graph topologically: the first group is every candidate that no locked
       pair puts below another remaining candidate; remove it and repeat. Ids within a group are
       sorted ascending.

    So two candidates share a group only when no chain of locked pairs separates them, which
    means their votes were exactly tied (a skipped pair always has a locked chain the other way).
    A candidate tied with everyone lands in the first group its locked pairs allow. With no
    orders every candidate is in one group.
    """
    ids = _unique(candidates)
    votes = pair_votes(orders, ids)
    majorities = [
        (votes[(a, b)] - votes[(b, a)], votes[(a, b)], a, b)
        for (a, b) in votes
        if votes[(a, b)] > votes[(b, a)]
    ]
    majorities.sort(key=lambda m: (-m[0], -m[1], m[2], m[3]))

    beats: dict[int, set[int]] = {c: set() for c in ids}
    for _, _, winner, loser in majorities:
        if not _reaches(beats, loser, winner):
            beats[winner].add(loser)

    beaten_by: dict[int, int] = {c: 0 for c in ids}
    for winner in ids:
        for loser in beats[winner]:
            beaten_by[loser] += 1
    remaining = set(ids)
    groups: list[list[int]] = []
    while remaining:
        layer = sorted(c for c in remaining if beaten_by[c] == 0)
        groups.append(layer)
        for winner in layer:
            remaining.discard(winner)
            for loser in beats[winner]:
                beaten_by[loser] -= 1
    return groups


def _reaches(beats: dict[int, set[int]], start: int, goal: int) -> bool:
    """Whether a chain of locked pairs leads from `start` down to `goal`."""
    seen = {start}
    stack = [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in beats[node]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def agreement_with_consensus(
    order: Order, others: Sequence[Order], candidates: Sequence[int]
) -> float | None:
    """Pairwise agreement of `order` with the `consensus_order` of `others`.

    The share of candidate pairs on which `order` and that consensus have the same relation
    (both a above b, both below, or both tied), as in `pairwise_agreement` for two orders. None
    when `others` is empty (there is no consensus to agree with) or they share no pair.
    """
    if not others:
        return None
    consensus = consensus_order(others, candidates)
    return pairwise_agreement([order, consensus])


def leave_one_out_agreement(
    orders: Sequence[Order], candidates: Sequence[int]
) -> list[float | None]:
    """For each order, pairwise agreement with the consensus_order of the *other* orders (None
    when it is the only order).

    This is how far each trainer stands from what the rest of the set decided without them, so a
    trainer is never measured against a consensus their own order helped make.
    """
    return [
        agreement_with_consensus(order, [*orders[:i], *orders[i + 1 :]], candidates)
        for i, order in enumerate(orders)
    ]


def length_pairs(order: Order, lengths: Mapping[int, int]) -> list[tuple[int, bool]]:
    """Each strict pair with different lengths as (longer minus shorter in characters, longer won).

    Tied candidates give no pair (as in `pairs_from_order`), nor do two replies of equal length,
    nor an id missing from `lengths` (an order naming a message that is not a candidate).
    """
    result: list[tuple[int, bool]] = []
    for winner, loser in pairs_from_order(order):
        won, lost = lengths.get(winner), lengths.get(loser)
        if won is not None and lost is not None and won != lost:
            result.append((abs(won - lost), won > lost))
    return result


def length_preference(order: Order, lengths: Mapping[int, int]) -> tuple[int, int]:
    """(pairs whose two replies differ in length, of those the pairs the longer reply won)."""
    pairs = length_pairs(order, lengths)
    return len(pairs), sum(longer_won for _, longer_won in pairs)


@dataclass(frozen=True)
class OrderQuality:
    """What one ranking contributes to the dashboards, as stored on `Ranking`."""

    consensus_agreement: float | None
    length_pairs: int
    longer_preferred: int


def orders_quality(
    orders: Sequence[Order],
    counted: Sequence[bool],
    candidates: Sequence[int],
    lengths: Mapping[int, int],
) -> list[OrderQuality]:
    """Each order's agreement with the consensus of the *counted* other orders, and its length
    preference.

    `counted[i]` is False for an order a lead excluded: it is still measured (against the
    consensus of the counted others) but never counts towards anyone else's consensus.
    """
    if len(counted) != len(orders):
        raise ValueError("orders and counted must have the same length.")
    result = []
    for i, order in enumerate(orders):
        others = [other for j, other in enumerate(orders) if j != i and counted[j]]
        pairs, longer = length_preference(order, lengths)
        result.append(
            OrderQuality(
                consensus_agreement=agreement_with_consensus(order, others, candidates),
                length_pairs=pairs,
                longer_preferred=longer,
            )
        )
    return result
