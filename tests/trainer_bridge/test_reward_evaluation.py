"""A reward model against fresh human rankings: the sets its training snapshots held are left
out, the rest are scored per round (the models that wrote their candidates)."""

from __future__ import annotations

import pytest

from annotations.models import RankingSet
from tests.factories import ModelVersionFactory, trainers
from tests.trainer_bridge.conftest import add_signal_sets, finished_rm_run
from tests.trainer_bridge.training.preference_signal import ranking_sets
from trainer_bridge.models import RewardEvaluation
from trainer_bridge.reward_evaluation import (
    fresh_sets,
    reward_evaluation_create,
    reward_evaluation_run,
    trained_set_ids,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def rounds(project, tiny_models, signal_data, snapshot_of):
    """Six sets exported and trained on; then four fresh sets by the tiny policy and three by a
    newer model."""
    policy, reward = tiny_models
    trained_sets = signal_data(sets=6, prompts=2, seed=1)
    snapshot = snapshot_of("preferences")
    run = finished_rm_run(project, reward, policy)
    run.snapshots.set([snapshot])
    annotators = trainers(project, 2, prefix="fresh")
    newer = ModelVersionFactory(name="alpha-ppo-run-9", source="org/x")
    first = add_signal_sets(project, ranking_sets(4, seed=7), author=policy, annotators=annotators)
    second = add_signal_sets(project, ranking_sets(3, seed=8), author=newer, annotators=annotators)
    return trained_sets, first, second


def test_sets_of_the_training_snapshots_are_left_out_and_the_rest_grouped_by_round(
    rounds, tiny_models, project
):
    trained, first, second = rounds
    reward = tiny_models[1]
    left_out, has_run = trained_set_ids(reward)
    assert has_run and left_out == {s.pk for s in trained}

    fresh = fresh_sets(project, exclude=left_out)
    assert [f.round for f in fresh] == ["tiny-policy"] * 4 + ["alpha-ppo-run-9"] * 3
    one = fresh[0]
    source = first[0]
    positions = list(source.entries.order_by("position").values_list("message__text", flat=True))
    assert one.completions == positions
    assert one.prompt[-1]["role"] == "user"
    # The consensus as groups of completion indices, best first: upbeat replies, then the rest.
    ids = list(source.entries.order_by("position").values_list("message_id", flat=True))
    assert one.consensus == [[ids.index(m) for m in group] for group in source.consensus]


def test_an_evaluation_scores_each_round_with_the_reward_model(rounds, tiny_models, project):
    trained, first, second = rounds
    evaluation = reward_evaluation_create(project=project, reward_model=tiny_models[1])

    done = reward_evaluation_run(evaluation.pk)

    assert done.state == "done", done.error
    expected_pairs = {
        name: sum(len(s.consensus[0]) * len(s.consensus[1]) for s in sets)
        for name, sets in (("tiny-policy", first), ("alpha-ppo-run-9", second))
    }
    by_round = {r["round"]: r for r in done.rounds}
    assert {name: r["pairs"] for name, r in by_round.items()} == expected_pairs
    assert by_round["tiny-policy"]["sets"] == 4 and by_round["alpha-ppo-run-9"]["sets"] == 3
    assert done.sets == 7 and done.pairs == sum(expected_pairs.values())
    assert 0 <= done.correct <= done.pairs and done.sets_left_out == len(trained)
    assert reward_evaluation_run(evaluation.pk) is None  # a second delivery does nothing


def test_an_evaluation_that_cannot_load_the_model_fails_with_the_reason(project, signal_data):
    signal_data(sets=2, prompts=1)
    broken = ModelVersionFactory(name="gone-reward", kind="reward", source="/nonexistent/rm")
    evaluation = reward_evaluation_create(project=project, reward_model=broken)
    failed = reward_evaluation_run(evaluation.pk)
    assert failed.state == "failed" and failed.error
    assert RewardEvaluation.objects.get(pk=evaluation.pk).finished_at is not None
    assert RankingSet.objects.filter(project=project, state="complete").count() == 2
