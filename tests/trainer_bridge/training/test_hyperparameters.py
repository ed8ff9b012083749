"""Hyper-parameters: each field's range, unknown names, rules tying two fields, JSON round trip."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from tests.trainer_bridge.training.entry_runs import ROOT
from trainer_bridge.training.hyperparameters import (
    STAGES,
    HyperparameterError,
    PPOHyperparameters,
    hyperparameter_fields,
    hyperparameters_from_json,
)

ALL_FIELDS = [(stage, spec) for stage in STAGES for spec in hyperparameter_fields(stage)]
# Other values a field's extremes need, where PPO ties two fields together.
CONTEXT = {
    ("ppo", "response_length"): {"max_length": 131072},
    ("ppo", "max_length"): {"response_length": 1},
    ("ppo", "num_mini_batches"): {"batch_size": 4096},
}


def _id(value) -> str:
    stage, spec = value
    return f"{stage}.{spec.name}"


def _refused(stage: str, data: dict, field: str) -> HyperparameterError:
    with pytest.raises(HyperparameterError) as caught:
        hyperparameters_from_json(stage, data)
    assert caught.value.field == field, caught.value
    return caught.value


@pytest.mark.parametrize("stage", STAGES)
def test_defaults_fill_every_field_and_round_trip_through_json(stage):
    defaults = hyperparameters_from_json(stage, None)
    as_json = defaults.to_json()
    assert list(as_json) == [spec.name for spec in hyperparameter_fields(stage)]
    assert hyperparameters_from_json(stage, {}) == defaults
    again = hyperparameters_from_json(stage, as_json)
    assert again == defaults
    assert again.to_json() == as_json
    assert defaults.stage == stage
    assert as_json["max_length"] >= 512


@pytest.mark.parametrize("stage", STAGES)
def test_changed_values_round_trip_and_are_kept(stage):
    changed = {"learning_rate": 0.0005, "batch_size": 4, "seed": 7, "max_length": 256}
    parsed = hyperparameters_from_json(stage, changed)
    for name, value in changed.items():
        assert parsed.to_json()[name] == value
    assert hyperparameters_from_json(stage, parsed.to_json()) == parsed


@pytest.mark.parametrize("case", ALL_FIELDS, ids=_id)
def test_each_field_accepts_its_range_and_refuses_beyond_it(case):
    stage, spec = case
    name = spec.name
    if spec.kind == "bool":
        for value in (True, False):
            assert hyperparameters_from_json(stage, {name: value}).to_json()[name] is value
        for bad in (1, "true", None):
            assert "true or false" in _refused(stage, {name: bad}, name).message
        return
    if spec.kind == "choice":
        for value in spec.choices:
            assert hyperparameters_from_json(stage, {name: value}).to_json()[name] == value
        for bad in ("nonsense", 1, None):
            assert "one of" in _refused(stage, {name: bad}, name).message
        return

    low, high = spec.minimum, spec.maximum
    context = CONTEXT.get((stage, name), {})
    top = hyperparameters_from_json(stage, {**context, name: high})
    assert top.to_json()[name] == high
    message = _refused(stage, {**context, name: high * 2 + 1}, name).message
    assert spec.allowed in message  # the message says the allowed range
    if spec.minimum_exclusive:
        _refused(stage, {**context, name: low}, name)
    else:
        bottom = hyperparameters_from_json(stage, {**context, name: low})
        assert bottom.to_json()[name] == low
    below = low - 1 if spec.kind == "int" else low - 0.5
    _refused(stage, {**context, name: below}, name)
    for bad in ("1", True, None, [1], math.nan, math.inf):
        _refused(stage, {**context, name: bad}, name)
    if spec.kind == "int":
        _refused(stage, {**context, name: low + 0.5}, name)


def test_whole_floats_count_as_integers():
    parsed = hyperparameters_from_json("rm", {"batch_size": 32.0, "epochs": 3e0})
    assert parsed.batch_size == 32 and type(parsed.batch_size) is int
    assert parsed.to_json()["epochs"] == 3


@pytest.mark.parametrize("stage", STAGES)
def test_an_unknown_name_is_refused_by_name(stage):
    error = _refused(stage, {"learning_rate": 1e-4, "lr": 1e-4}, "lr")
    assert f"not a hyper-parameter of the {stage} stage" in error.message
    assert "learning_rate" in error.message  # lists the known names


def test_a_stage_only_takes_its_own_names():
    _refused("rm", {"kl_coef": 0.1}, "kl_coef")
    _refused("sft", {"center_rewards_coefficient": 0.1}, "center_rewards_coefficient")
    _refused("ppo", {"epochs": 2}, "epochs")


def test_a_value_that_is_not_an_object_is_refused_as_a_whole():
    error = _refused("rm", [1, 2], "")
    assert "JSON object" in str(error)


def test_an_unknown_stage_is_a_programming_error():
    with pytest.raises(ValueError, match="Unknown stage"):
        hyperparameters_from_json("dpo", {})


def test_ppo_response_must_leave_room_for_the_prompt():
    error = _refused("ppo", {"max_length": 256, "response_length": 256}, "response_length")
    assert "less than max_length (256)" in error.message
    assert hyperparameters_from_json("ppo", {"max_length": 256, "response_length": 255})


def test_ppo_mini_batches_must_divide_the_batch():
    error = _refused("ppo", {"batch_size": 6, "num_mini_batches": 4}, "num_mini_batches")
    assert "(6)" in error.message
    parsed = hyperparameters_from_json(
        "ppo", {"batch_size": 6, "gradient_accumulation_steps": 2, "num_mini_batches": 4}
    )
    assert parsed.effective_batch_size == 12


def test_ppo_whitened_rewards_need_eight_rows_per_mini_batch():
    _refused(
        "ppo", {"whiten_rewards": True, "batch_size": 8, "num_mini_batches": 2}, "whiten_rewards"
    )
    assert hyperparameters_from_json("ppo", {"whiten_rewards": True, "batch_size": 8})


def test_direct_construction_is_checked_too():
    with pytest.raises(HyperparameterError) as caught:
        PPOHyperparameters(kl_coef=-1.0)
    assert caught.value.field == "kl_coef"
    with pytest.raises(HyperparameterError):
        PPOHyperparameters(steps=10.0)  # a float where an integer belongs


def test_light_modules_import_without_torch_or_django():
    # The web process imports these at start-up; the entry point must start on a machine
    # without Django. Both hold only while none of them imports the heavy libraries.
    code = (
        "import sys; sys.modules['django'] = None;"
        "import trainer_bridge.training.hyperparameters, trainer_bridge.training.checks,"
        " trainer_bridge.training.reward_eval, trainer_bridge.training.events,"
        " trainer_bridge.training.entry, trainer_bridge.training.checkpoints;"
        "heavy = {'torch', 'transformers', 'trl', 'datasets', 'tokenizers'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
