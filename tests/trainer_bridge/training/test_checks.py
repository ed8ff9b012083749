"""The checks run before a training run is queued: models that do not load, tokenizers that
differ, reward models that are not reward models; each answered in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainer_bridge.tiny_model import build_tiny_tokenizer, tiny_dialogues
from trainer_bridge.training.checks import (
    model_load_problem,
    reward_model_problem,
    tokenizer_mismatch,
)


@pytest.fixture
def copy_of(tiny_model_paths, tmp_path):
    def copy(kind: str = "policy") -> Path:
        target = tmp_path / kind
        shutil.copytree(getattr(tiny_model_paths, kind), target)
        return target

    return copy


@pytest.mark.parametrize("stage", ["sft", "rm", "ppo"])
def test_the_tiny_policy_can_be_the_base_of_every_stage(tiny_model_paths, stage):
    assert model_load_problem(str(tiny_model_paths.policy), stage) is None


def test_a_missing_directory(tmp_path):
    assert model_load_problem(str(tmp_path / "gone"), "rm") == (
        f"the model directory {tmp_path / 'gone'} does not exist"
    )


def test_a_reward_model_is_no_policy(tiny_model_paths):
    problem = model_load_problem(str(tiny_model_paths.reward), "ppo")
    assert (
        problem
        == f"{tiny_model_paths.reward} is a reward (sequence-classification) model, not a policy"
    )
    # Retraining a reward model from a reward model is fine.
    assert model_load_problem(str(tiny_model_paths.reward), "rm") is None


def test_weights_that_are_missing_or_not_safetensors(copy_of):
    policy = copy_of()
    weights = policy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert "model.safetensors cannot be read as safetensors" in model_load_problem(
        str(policy), "sft"
    )
    weights.write_bytes(data[:4])
    assert "cannot be read as safetensors" in model_load_problem(str(policy), "sft")
    weights.unlink()
    assert "has no weights" in model_load_problem(str(policy), "sft")


def test_a_configuration_that_does_not_load(copy_of):
    policy = copy_of()
    (policy / "config.json").write_text("{broken")
    assert model_load_problem(str(policy), "sft").startswith(
        "the model configuration does not load:"
    )
    (policy / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    assert model_load_problem(str(policy), "sft").startswith(
        "the model configuration does not load:"
    )


def test_a_tokenizer_that_does_not_load_or_cannot_render_chats(copy_of):
    policy = copy_of()
    (policy / "chat_template.jinja").unlink()
    assert model_load_problem(str(policy), "rm") == (
        "the tokenizer has no chat template; Parley's exports are conversations"
    )
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (policy / name).unlink()
    assert model_load_problem(str(policy), "rm").startswith("the tokenizer does not load:")


def test_a_tokenizer_larger_than_the_embeddings(copy_of):
    policy = copy_of()
    config = json.loads((policy / "config.json").read_text())
    config["vocab_size"] = 100
    (policy / "config.json").write_text(json.dumps(config))
    problem = model_load_problem(str(policy), "sft")
    assert problem.startswith("the tokenizer has ids up to ")
    assert problem.endswith("but the model's embeddings have 100 rows")


def test_the_tiny_policy_and_reward_model_share_one_tokenizer(tiny_model_paths):
    assert tokenizer_mismatch(str(tiny_model_paths.policy), str(tiny_model_paths.reward)) is None


def test_a_reward_model_with_another_tokenizer_is_refused(tiny_model_paths, copy_of):
    reward = copy_of("reward")
    # The same recipe on another corpus: the same special tokens, other merges.
    build_tiny_tokenizer(tiny_dialogues(seed=1)).save_pretrained(reward)
    problem = tokenizer_mismatch(str(tiny_model_paths.policy), str(reward))
    assert problem.startswith("vocabularies differ (")
    assert "only the policy has" in problem and "only the reward model has" in problem


def test_a_different_chat_template_is_a_mismatch(tiny_model_paths, copy_of):
    reward = copy_of("reward")
    template = reward / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|end|>", "<|endoftext|>"))
    assert tokenizer_mismatch(str(tiny_model_paths.policy), str(reward)) == (
        "end-of-turn token '<|end|>' vs '<|endoftext|>'; chat templates differ"
    )


def test_a_missing_reward_model_is_named(tiny_model_paths, tmp_path):
    problem = tokenizer_mismatch(str(tiny_model_paths.policy), str(tmp_path / "gone"))
    assert problem == f"the reward model directory {tmp_path / 'gone'} does not exist"


def test_only_a_one_output_classifier_is_a_reward_model(tiny_model_paths, copy_of):
    assert reward_model_problem(str(tiny_model_paths.reward)) is None
    assert reward_model_problem(str(tiny_model_paths.policy)) == (
        f"{tiny_model_paths.policy} is not a reward model (no sequence-classification head)"
    )
    reward = copy_of("reward")
    config = json.loads((reward / "config.json").read_text())
    config["id2label"] = {"0": "bad", "1": "good"}
    (reward / "config.json").write_text(json.dumps(config))
    assert reward_model_problem(str(reward)) == "a reward model has one output; this one has 2"
