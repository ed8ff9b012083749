"""A reward model against human rankings it never saw: pairs of the consensus it orders right."""

from __future__ import annotations

import pytest

from tests.trainer_bridge.training.preference_signal import ranking_sets
from trainer_bridge.training.reward_eval import (
    RankedSet,
    RewardAccuracy,
    consensus_pairs,
    reward_accuracy,
)


@pytest.mark.parametrize(
    ("consensus", "pairs"),
    [
        ([2, 0, 1], [(2, 0), (2, 1), (0, 1)]),
        ([[2], [0, 1]], [(2, 0), (2, 1)]),  # no pair inside a tie
        ([[0, 1], [2], [3]], [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]),
        ([3, [0, 2], 1], [(3, 0), (3, 2), (3, 1), (0, 1), (2, 1)]),
        ([[0, 1, 2]], []),
        ([], []),
    ],
)
def test_consensus_pairs_by_hand(consensus, pairs):
    assert consensus_pairs(consensus) == pairs


def test_accuracy_is_the_share_of_pairs_ordered_right():
    assert RewardAccuracy(sets=3, pairs=8, correct=6).accuracy == 0.75
    assert RewardAccuracy(sets=2, pairs=0, correct=0).accuracy is None


def _fresh_sets(count: int) -> list[RankedSet]:
    # Another seed than the training and validation sets of the session's reward model.
    return [
        RankedSet(prompt=s.prompt, completions=s.replies, consensus=s.consensus)
        for s in ranking_sets(count, seed=321)
    ]


def test_the_trained_reward_model_agrees_with_fresh_rankings(reward_model_dir):
    sets = _fresh_sets(30)
    result = reward_accuracy(str(reward_model_dir), sets)
    expected_pairs = sum(len(s.consensus[0]) * len(s.consensus[1]) for s in sets)
    assert (result.sets, result.pairs) == (30, expected_pairs)
    assert result.accuracy >= 0.9

    # The same sets ranked the other way round: the model now disagrees as often as it agreed.
    reversed_sets = [
        RankedSet(prompt=s.prompt, completions=s.completions, consensus=s.consensus[::-1])
        for s in sets
    ]
    flipped = reward_accuracy(str(reward_model_dir), reversed_sets)
    assert flipped.pairs == result.pairs
    assert flipped.correct == result.pairs - result.correct  # no two scores tie


def test_sets_without_pairs_are_counted_but_score_nothing(reward_model_dir):
    sets = _fresh_sets(2)
    tied = [
        RankedSet(prompt=s.prompt, completions=s.completions, consensus=[[0, 1, 2, 3]])
        for s in sets
    ]
    assert reward_accuracy(str(reward_model_dir), tied) == RewardAccuracy(
        sets=2, pairs=0, correct=0
    )
    assert reward_accuracy(str(reward_model_dir), []).accuracy is None
