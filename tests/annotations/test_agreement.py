"""Agreement, tau-b and ranked-pairs consensus, checked against examples worked out by hand."""

import ast
import math
from itertools import permutations
from pathlib import Path

import pytest

from annotations.agreement import (
    agreement_with_consensus,
    consensus_order,
    kendall_tau,
    kendall_tau_b,
    leave_one_out_agreement,
    length_pairs,
    length_preference,
    orders_quality,
    pair_margins,
    pair_relation,
    pair_votes,
    pairs_from_order,
    pairwise_agreement,
)


def test_the_maths_imports_nothing_from_django():
    import annotations.agreement as module

    tree = ast.parse(Path(module.__file__).read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
    assert {"__future__", "math"} <= modules
    assert not any(name.split(".")[0] in {"django", "annotations"} for name in modules)


# --- pairs and relations -------------------------------------------------------------------


def test_an_untied_order_of_four_gives_six_pairs():
    # K = 4 untied: K * (K - 1) / 2 = 4 * 3 / 2 = 6 pairs, best winner first.
    assert pairs_from_order([[1], [2], [3], [4]]) == [
        (1, 2), (1, 3), (1, 4),
        (2, 3), (2, 4),
        (3, 4),
    ]  # fmt: skip


def test_tied_candidates_give_no_pair():
    # 2 and 3 are tied: the 6 pairs lose {2, 3}, leaving 5.
    assert pairs_from_order([[1], [2, 3], [4]]) == [(1, 2), (1, 3), (1, 4), (2, 4), (3, 4)]
    assert pairs_from_order([[1, 2, 3]]) == []


def test_pair_relation():
    order = [[7], [3, 9], [4]]
    assert pair_relation(order, 7, 4) == 1
    assert pair_relation(order, 4, 3) == -1
    assert pair_relation(order, 3, 9) == 0
    assert pair_relation(order, 9, 3) == 0


def test_bad_orders_are_refused():
    with pytest.raises(ValueError, match="appears twice"):
        pairs_from_order([[1], [2, 1]])
    with pytest.raises(ValueError, match="not in the order"):
        pair_relation([[1], [2]], 1, 5)


# --- agreement and tau ---------------------------------------------------------------------


def test_fewer_than_two_orders_have_no_agreement():
    assert pairwise_agreement([]) is None
    assert pairwise_agreement([[[1], [2]]]) is None
    assert kendall_tau([]) is None
    assert kendall_tau([[[1], [2]]]) is None


def test_identical_rankings_agree_fully():
    order = [[1], [2], [3], [4]]
    # Every one of the 6 pairs has the same relation: 6 / 6 = 1.
    assert pairwise_agreement([order, order]) == 1.0
    # concordant 6, discordant 0, no ties: (6 - 0) / sqrt(6 * 6) = 1.
    assert kendall_tau([order, order]) == 1.0


def test_reversed_rankings_disagree_fully():
    forward, backward = [[1], [2], [3], [4]], [[4], [3], [2], [1]]
    # Every pair is +1 in one and -1 in the other: 0 / 6 = 0.
    assert pairwise_agreement([forward, backward]) == 0.0
    # concordant 0, discordant 6: (0 - 6) / sqrt(6 * 6) = -1.
    assert kendall_tau([forward, backward]) == -1.0


def test_partial_agreement_with_three_candidates():
    a = [[1], [2], [3]]
    b = [[2], [1], [3]]
    # {1,2}: a +1, b -1  -> differ, discordant
    # {1,3}: a +1, b +1  -> same,   concordant
    # {2,3}: a +1, b +1  -> same,   concordant
    # agreement = 2 / 3; tau = (2 - 1) / sqrt(3 * 3) = 1 / 3
    assert pairwise_agreement([a, b]) == pytest.approx(2 / 3)
    assert kendall_tau([a, b]) == pytest.approx(1 / 3)


def test_a_tie_on_one_side():
    a = [[1], [2], [3]]
    b = [[1, 2], [3]]
    # {1,2}: a +1, b 0   -> differ; tied in b, so neither concordant nor discordant
    # {1,3}: a +1, b +1  -> same, concordant
    # {2,3}: a +1, b +1  -> same, concordant
    # agreement = 2 / 3
    # tau-b: n0 = 3 pairs, n1 = 0 tied in a, n2 = 1 tied in b
    #        (2 - 0) / sqrt((3 - 0) * (3 - 1)) = 2 / sqrt(6) = 0.8165
    assert pairwise_agreement([a, b]) == pytest.approx(2 / 3)
    assert kendall_tau([a, b]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau([a, b]) == pytest.approx(0.816496580927726)


def test_an_all_tied_ranking():
    strict, all_tied = [[1], [2], [3]], [[1, 2, 3]]
    # Every pair: +1 against 0 -> differ: 0 / 3. tau-b: n2 = 3 = n0, so 0 / 0: undefined.
    assert pairwise_agreement([strict, all_tied]) == 0.0
    assert kendall_tau_b(strict, all_tied) is None
    assert kendall_tau([strict, all_tied]) is None
    # Two all-tied rankings agree on every pair (0 = 0) but tau is still undefined.
    assert pairwise_agreement([all_tied, all_tied]) == 1.0
    assert kendall_tau([all_tied, all_tied]) is None
    # Undefined trainer pairs are left out of the mean, not counted as 0:
    # (strict, strict) = 1; (strict, tied) and (strict, tied) undefined -> mean of [1] = 1.
    # Agreement counts them: (1 + 0 + 0) / 3 = 1 / 3.
    assert kendall_tau([strict, strict, all_tied]) == 1.0
    assert pairwise_agreement([strict, strict, all_tied]) == pytest.approx(1 / 3)


def test_three_trainers():
    a = [[1], [2], [3]]
    b = [[1], [3], [2]]
    c = [[2], [1], [3]]
    #            {1,2} {1,3} {2,3}   same   agreement   conc disc   tau
    # a vs b:     +/+   +/+   +/-     2       2/3         2    1    (2-1)/3 =  1/3
    # a vs c:     +/-   +/+   +/+     2       2/3         2    1    (2-1)/3 =  1/3
    # b vs c:     +/-   +/+   -/+     1       1/3         1    2    (1-2)/3 = -1/3
    # agreement = (2/3 + 2/3 + 1/3) / 3 = 5/9;  tau = (1/3 + 1/3 - 1/3) / 3 = 1/9
    assert pairwise_agreement([a, b, c]) == pytest.approx(5 / 9)
    assert kendall_tau([a, b, c]) == pytest.approx(1 / 9)
    # Votes: 1>2 by a, b (2) vs c (1): +1.  1>3 by all three: +3.  2>3 by a, c (2) vs b: +1.
    margins = pair_margins([a, b, c], [1, 2, 3])
    assert margins == {(1, 2): 1, (2, 1): -1, (1, 3): 3, (3, 1): -3, (2, 3): 1, (3, 2): -1}
    assert pair_votes([a, b, c], [1, 2, 3])[(2, 1)] == 1
    # Lock 1>3 (margin 3), then 1>2 and 2>3 (margin 1, 2 votes each): a full order.
    assert consensus_order([a, b, c], [1, 2, 3]) == [[1], [2], [3]]


def test_two_candidates():
    up, down = [[5], [6]], [[6], [5]]
    assert pairs_from_order(up) == [(5, 6)]
    assert pairwise_agreement([up, up]) == 1.0 and kendall_tau([up, up]) == 1.0
    assert pairwise_agreement([up, down]) == 0.0 and kendall_tau([up, down]) == -1.0
    assert consensus_order([up, up], [5, 6]) == [[5], [6]]
    # 1 vote each way: no majority, nothing locked, one tie group.
    assert consensus_order([up, down], [5, 6]) == [[5, 6]]
    # 2 to 1 for 6.
    assert consensus_order([up, down, down], [5, 6]) == [[6], [5]]
    assert pair_margins([up, down, down], [5, 6]) == {(5, 6): -1, (6, 5): 1}


# --- consensus -----------------------------------------------------------------------------


def test_consensus_of_identical_orders_is_that_order_ties_included():
    order = [[3], [1, 2], [4]]
    # 1 v 2 is 0 to 0: no majority; every other pair is 3 to 0 and locked.
    assert consensus_order([order, order, order], [1, 2, 3, 4]) == [[3], [1, 2], [4]]


def test_consensus_keeps_exactly_tied_candidates_together():
    # 1 v 2: 1 to 1, tied.  1>3 and 2>3: 2 to 0.  Locked: 1>3, 2>3.
    assert consensus_order([[[1], [2], [3]], [[2], [1], [3]]], [1, 2, 3]) == [[1, 2], [3]]
    # Reversed pair of orders: every pair 1 to 1, nothing locked, all in one group.
    assert consensus_order([[[1], [2], [3]], [[3], [2], [1]]], [1, 2, 3]) == [[1, 2, 3]]


def test_consensus_with_ties_inside_the_orders():
    orders = [[[1, 2], [3]], [[1], [2, 3]]]
    # 1>2: 0 + 1 = 1 to 0 (margin 1).  1>3: 1 + 1 = 2 to 0 (margin 2).  2>3: 1 + 0 = 1 to 0.
    # Lock 1>3, then 1>2 and 2>3: [[1], [2], [3]].
    assert consensus_order(orders, [1, 2, 3]) == [[1], [2], [3]]


def test_a_candidate_tied_with_everyone_lands_in_the_first_group_its_pairs_allow():
    # x=1, a=2, c=3.  v1: x > a > c, v2: c > x > a.
    # x>a: 2 to 0, locked.  x v c: 1 to 1.  a v c: 1 to 1.  Layers: {x, c} have no locked
    # defeat, then a.
    orders = [[[1], [2], [3]], [[3], [1], [2]]]
    assert consensus_order(orders, [1, 2, 3]) == [[1, 3], [2]]


def test_a_condorcet_cycle_is_broken_at_its_weakest_link():
    # Candidates 30, 10, 20.
    # 3 x [30, 10, 20], 2 x [10, 20, 30], 2 x [20, 30, 10]
    # 30>10: 3 + 2 = 5 to 2, margin 3
    # 10>20: 3 + 2 = 5 to 2, margin 3
    # 20>30: 2 + 2 = 4 to 3, margin 1   <- closes the cycle 30>10>20>30: skipped
    orders = 3 * [[[30], [10], [20]]] + 2 * [[[10], [20], [30]]] + 2 * [[[20], [30], [10]]]
    assert consensus_order(orders, [10, 20, 30]) == [[30], [10], [20]]
    assert pair_margins(orders, [10, 20, 30])[(20, 30)] == 1


def test_rock_paper_scissors_of_equal_strength_is_broken_by_ids():
    # 1>2 by a, c; 2>3 by a, b; 3>1 by b, c: every margin 2 - 1 = 1 with 2 winning votes.
    # Tie-break by (winner, loser): lock (1, 2), lock (2, 3), skip (3, 1) as it closes a cycle.
    a, b, c = [[1], [2], [3]], [[2], [3], [1]], [[3], [1], [2]]
    for orders in permutations([a, b, c]):
        for candidates in permutations([1, 2, 3]):
            assert consensus_order(list(orders), list(candidates)) == [[1], [2], [3]]
    # Everyone disagrees with someone: each trainer pair shares 1 relation of 3.
    assert pairwise_agreement([a, b, c]) == pytest.approx(1 / 3)
    # Each trainer pair: 1 concordant, 2 discordant: (1 - 2) / 3 = -1/3.
    assert kendall_tau([a, b, c]) == pytest.approx(-1 / 3)


def test_consensus_without_orders_ties_everything_and_ignores_strangers():
    assert consensus_order([], [4, 2, 9]) == [[2, 4, 9]]
    # Ids outside the candidates are ignored; a candidate no order mentions is tied with all.
    orders = [[[1], [2], [99]], [[1], [99], [2]]]
    assert consensus_order(orders, [1, 2, 3]) == [[1, 3], [2]]


# --- leave-one-out agreement and length preference -----------------------------------------

A, B, C = 1, 2, 3


def test_each_trainer_against_the_consensus_of_the_others():
    # r1 a>b>c, r2 a>c>b, r3 b>a>c.
    # Without r1: a>c 2-0, a-b and b-c split: consensus [[a, b], [c]]. r1 agrees on a-c and
    # b-c, not on a-b (r1 says a>b, the consensus ties them): 2/3.
    # Without r2: a>c and b>c 2-0, a-b split: [[a, b], [c]]. r2 agrees on a-c only: 1/3.
    # Without r3: a>b, a>c 2-0, b-c split: [[a], [b, c]]. r3 agrees on a-c only: 1/3.
    orders = [[[A], [B], [C]], [[A], [C], [B]], [[B], [A], [C]]]
    assert leave_one_out_agreement(orders, [A, B, C]) == pytest.approx([2 / 3, 1 / 3, 1 / 3])


def test_a_lone_order_has_no_others_to_agree_with():
    assert leave_one_out_agreement([[[A], [B]]], [A, B]) == [None]
    assert leave_one_out_agreement([], [A, B]) == []
    assert agreement_with_consensus([[A], [B]], [], [A, B]) is None


def test_length_pairs_skip_ties_and_equal_lengths():
    lengths = {A: 10, B: 30, C: 10}
    # b>a>c: b beat a (30 vs 10) and c, both won by the longer; a-c have equal lengths.
    assert length_pairs([[B], [A], [C]], lengths) == [(20, True), (20, True)]
    assert length_preference([[B], [A], [C]], lengths) == (2, 2)
    # a and c tied above b: their pair gives nothing; both beat the longer b.
    assert length_pairs([[A, C], [B]], lengths) == [(20, False), (20, False)]
    assert length_preference([[A, C], [B]], lengths) == (2, 0)
    assert length_preference([[A, B, C]], lengths) == (0, 0)
    # An id that is not a candidate (no length) gives no pair.
    assert length_pairs([[B], [99], [A]], lengths) == [(20, True)]


def test_an_excluded_order_is_measured_but_never_counts_for_the_others():
    lengths = {A: 6, B: 7, C: 11}
    orders = [[[A], [B], [C]], [[A], [B], [C]], [[C], [B], [A]]]
    figures = orders_quality(orders, [True, True, False], [A, B, C], lengths)
    # r1 against r2 alone (the spammer does not count): full agreement. Had the spammer counted,
    # every pair would split 1-1 against r2 and the consensus would tie everything: 0.
    assert [f.consensus_agreement for f in figures] == [1.0, 1.0, 0.0]
    assert [(f.length_pairs, f.longer_preferred) for f in figures] == [(3, 0), (3, 0), (3, 3)]
    counted_all = orders_quality(orders, [True, True, True], [A, B, C], lengths)
    assert counted_all[0].consensus_agreement == 0.0
