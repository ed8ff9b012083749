"""Krippendorff's alpha, Fleiss' kappa, the bootstrap interval and Bradley–Terry, against
published worked examples and cases worked by hand."""

import math

import pytest

from annotations.reliability import (
    FleissTally,
    add_coincidences,
    bootstrap_mean_interval,
    bradley_terry,
    flag_counts,
    fleiss_kappa,
    krippendorff_alpha_ordinal,
    order_ranks,
    rank_coincidences,
    value_coincidences,
    win_rates,
)

# ------------------------------------------------------------------------- Krippendorff's alpha

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, values 1..5, with missing values (None). Published: nominal 0.743, ordinal 0.815,
# interval 0.849.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _units(observers):
    return [[v for v in column if v is not None] for column in zip(*observers, strict=True)]


def test_coincidences_of_the_published_example():
    o = value_coincidences(_units(KRIPPENDORFF_2011), 5)
    # The published matrix: n_c = 9, 13, 10, 5, 3 (n = 40); unit 12 has one value and is left out.
    assert [round(sum(row), 6) for row in o] == [9, 13, 10, 5, 3]
    assert o[0][0] == pytest.approx(7) and o[0][1] == pytest.approx(4 / 3)
    assert o[1][1] == pytest.approx(10) and o[3][3] == pytest.approx(4)
    assert all(o[c][k] == pytest.approx(o[k][c]) for c in range(5) for k in range(5))


def test_ordinal_alpha_of_the_published_example():
    o = value_coincidences(_units(KRIPPENDORFF_2011), 5)
    assert krippendorff_alpha_ordinal(o) == pytest.approx(0.815, abs=5e-4)


def test_ordinal_alpha_worked_by_hand():
    # Two units rated by two coders: (1, 1) and (1, 2). o = [[2, 1], [1, 0]], n_c = (3, 1),
    # n = 4; d2_12 = (3 + 1 - (3 + 1) / 2) ** 2 = 4. Observed 2 * 1 * 4 = 8, expected
    # 2 * 3 * 1 * 4 = 24: alpha = 1 - 3 * 8 / 24 = 0.
    o = value_coincidences([[1, 1], [1, 2]], 2)
    assert o == [[2.0, 1.0], [1.0, 0.0]]
    assert krippendorff_alpha_ordinal(o) == pytest.approx(0.0)
    # Perfect agreement on different values is 1.
    assert krippendorff_alpha_ordinal(value_coincidences([[1, 1], [2, 2]], 2)) == 1.0


def test_alpha_is_undefined_without_variation_or_pairable_values():
    assert krippendorff_alpha_ordinal(value_coincidences([[2, 2], [2, 2]], 3)) is None
    assert krippendorff_alpha_ordinal(value_coincidences([[1], [2]], 2)) is None


def test_ranks_give_a_tie_group_its_first_rank():
    assert order_ranks([[7], [3, 9], [4]]) == {7: 1, 3: 2, 9: 2, 4: 4}


def test_rank_coincidences_of_one_set_and_their_sum():
    # Two trainers over candidates 1, 2, 3: identical except they swap the last two.
    first = rank_coincidences([[[1], [2], [3]], [[1], [3], [2]]], size=3)
    # Candidate 1: ranks (1, 1); candidate 2: (2, 3); candidate 3: (3, 2).
    assert first == [[2.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 2.0, 0.0]]
    second = rank_coincidences([[[1], [2], [3]], [[1], [2], [3]]], size=3)
    total = add_coincidences(first, second)
    assert total == [[4.0, 0.0, 0.0], [0.0, 2.0, 2.0], [0.0, 2.0, 2.0]]
    # n_c = 4, 4, 4; n = 12; d2_23 = (8 - 4) ** 2 = 16, d2_12 = 16, d2_13 = (12 - 4) ** 2 = 64.
    # Observed: o_23 + o_32 = 4, times 16 = 64. Expected: 2 * 16 * (16 + 16 + 64) = 3072.
    assert krippendorff_alpha_ordinal(total) == pytest.approx(1 - 11 * 64 / 3072)


def test_rank_coincidences_refuse_ranks_beyond_the_size():
    with pytest.raises(ValueError, match="outside"):
        rank_coincidences([[[1], [2], [3]], [[3], [2], [1]]], size=2)


# ------------------------------------------------------------------------- Fleiss' kappa

# The worked example of Wikipedia's "Fleiss' kappa" article: ten subjects, fourteen raters,
# five categories; P = 0.378, Pe = 0.213, kappa = 0.210.
FLEISS_EXAMPLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_of_the_worked_example():
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.20993, abs=5e-5)


def test_fleiss_kappa_yes_no_by_hand():
    # Three raters, items [yes, no]: (3, 0), (0, 3), (2, 1), (1, 2). Item agreement: 1, 1, 1/3,
    # 1/3; mean 2/3. Yes share 6/12: Pe = 1/2. kappa = (2/3 - 1/2) / (1/2) = 1/3.
    assert fleiss_kappa([[3, 0], [0, 3], [2, 1], [1, 2]]) == pytest.approx(1 / 3)


def test_tallies_merge_to_the_kappa_of_all_items():
    first, second = FleissTally(), FleissTally()
    for counts in FLEISS_EXAMPLE[:4]:
        first.add(counts)
    for counts in FLEISS_EXAMPLE[4:]:
        second.add(counts)
    merged = first.merge(second)
    assert merged.items == 10 and merged.ratings == 140
    assert merged.category_totals == [20, 28, 39, 21, 32]
    assert merged.kappa() == pytest.approx(fleiss_kappa(FLEISS_EXAMPLE))
    again = FleissTally.from_json(merged.to_json())
    assert again == merged


def test_adding_alike_items_at_once_equals_adding_each():
    one_by_one, at_once = FleissTally(), FleissTally()
    for counts in ([0, 3], [0, 3], [0, 3], [2, 1]):
        one_by_one.add(counts)
    at_once.add([0, 3], times=3)
    at_once.add([2, 1])
    assert at_once == one_by_one
    # Items 1, 1, 1, 1/3: mean 5/6; yes 2 of 12: Pe = 1/36 + 25/36 = 26/36.
    assert at_once.kappa() == pytest.approx((5 / 6 - 26 / 36) / (1 - 26 / 36))


def test_kappa_is_undefined_without_items_or_variation():
    assert FleissTally().kappa() is None
    assert fleiss_kappa([[3, 0], [3, 0]]) is None
    # An item with one rater is skipped.
    tally = FleissTally()
    tally.add([1, 0])
    assert tally.items == 0


def test_flag_counts_of_one_set():
    flags = [{"5": ["harmful"], "6": ["harmful", "false"]}, {"6": ["false"]}, {}]
    assert flag_counts(flags, [5, 6, 7], "harmful") == [[1, 2], [1, 2], [0, 3]]
    assert flag_counts(flags, [5, 6, 7], "false") == [[0, 3], [2, 1], [0, 3]]


# ------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_of_a_proportion_matches_its_standard_error():
    # 400 values, half 1: standard error 0.025, so a 95% interval is about 0.5 +- 0.049.
    low, high = bootstrap_mean_interval([0.0] * 200 + [1.0] * 200, resamples=4000)
    assert low == pytest.approx(0.451, abs=0.01) and high == pytest.approx(0.549, abs=0.01)


def test_counts_give_the_same_interval_as_the_values_they_stand_for():
    values = [0.0] * 30 + [1 / 3] * 50 + [1.0] * 20
    expanded = bootstrap_mean_interval(values, seed=7)
    compact = bootstrap_mean_interval([0.0, 1 / 3, 1.0], [30, 50, 20], seed=7)
    assert expanded == compact
    assert compact[0] < (50 / 3 + 20) / 100 < compact[1]


def test_bootstrap_edge_cases():
    assert bootstrap_mean_interval([]) is None
    assert bootstrap_mean_interval([0.5], [0]) is None
    assert bootstrap_mean_interval([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))
    with pytest.raises(ValueError):
        bootstrap_mean_interval([1.0], [1, 2])


def test_bootstrap_is_fast_for_many_sets_with_few_distinct_values():
    interval = bootstrap_mean_interval([0.0, 1 / 3, 2 / 3, 1.0], [50_000] * 4)
    assert interval[0] < 0.5 < interval[1] and interval[1] - interval[0] < 0.005


# ------------------------------------------------------------------------- Bradley–Terry


def test_two_players_by_hand():
    # a beat b 3 times of 4: p_a / p_b = 3, so centred log-strengths are +- ln(3) / 2. The
    # information of the difference is n p (1 - p) = 4 * 3/4 * 1/4 = 3/4; each centred strength
    # has a quarter of the difference's variance 4/3: se = sqrt(1/3).
    a, b = bradley_terry(["a", "b"], [[0, 3], [1, 0]])
    assert (a.name, b.name) == ("a", "b")
    assert a.strength == pytest.approx(math.log(3) / 2) and b.strength == pytest.approx(-a.strength)
    z = 1.959964
    assert a.high - a.strength == pytest.approx(z * math.sqrt(1 / 3), rel=1e-5)
    assert a.comparisons == b.comparisons == 4


def test_three_players_with_an_exact_fit():
    # Strengths 4 : 2 : 1 make every player's expected wins equal its wins: a wins 2 of 3 against
    # b and 4 of 5 against c, b wins 2 of 3 against c. Centred logs: ln 2, 0, -ln 2.
    result = bradley_terry(["c", "b", "a"], [[0, 1, 1], [2, 0, 1], [4, 2, 0]])
    assert [s.name for s in result] == ["a", "b", "c"]
    assert [s.strength for s in result] == pytest.approx([math.log(2), 0, -math.log(2)], abs=1e-8)
    assert [s.comparisons for s in result] == [8, 6, 8]
    assert all(s.low < s.strength < s.high for s in result)


def test_unbounded_strengths_need_a_prior():
    with pytest.raises(ValueError, match="prior"):
        bradley_terry(["a", "b"], [[0, 3], [0, 0]])
    # a > b > c with no win back up the chain: c's strength would go to zero.
    with pytest.raises(ValueError, match="prior"):
        bradley_terry(["a", "b", "c"], [[0, 2, 0], [1, 0, 1], [0, 0, 0]])
    # Rock, paper, scissors once each: a cycle of wins, so a fit exists, and it is even.
    cycle = bradley_terry(["r", "p", "s"], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert [s.strength for s in cycle] == pytest.approx([0, 0, 0], abs=1e-9)
    a, b = bradley_terry(["a", "b"], [[0, 3], [0, 0]], prior=1.0)
    assert a.name == "a" and math.isfinite(a.strength) and a.strength > 0 > b.strength


def test_one_or_no_players():
    assert bradley_terry([], []) == []
    (only,) = bradley_terry(["solo"], [[0]])
    assert (only.strength, only.low, only.high, only.comparisons) == (0.0, 0.0, 0.0, 0)


def test_win_rates():
    rates = win_rates(["a", "b", "c"], [[0, 3, 0], [1, 0, 0], [0, 0, 0]])
    assert rates[0][1] == 0.75 and rates[1][0] == 0.25
    assert rates[0][2] is None and rates[0][0] is None


def test_the_reliability_maths_imports_nothing_from_django():
    import ast
    from pathlib import Path

    import annotations.reliability as module

    tree = ast.parse(Path(module.__file__).read_text())
    modules = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {
        a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
    }
    assert "numpy" in modules
    assert not any(name.split(".")[0] == "django" for name in modules)
    assert {name for name in modules if name.startswith("annotations")} == {"annotations.agreement"}
