"""Sampling parameters: defaults, limits, the JSON a request stores, and a project's settings."""

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import override_settings

from trainer_bridge.sampling_params import SamplingParams


def test_defaults_store_only_temperature_and_length():
    assert SamplingParams() == SamplingParams(
        temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=256, repetition_penalty=1.0, seed=None
    )
    assert SamplingParams().to_json() == {"temperature": 1.0, "max_new_tokens": 256}


def test_json_round_trip_keeps_every_set_value():
    params = SamplingParams(
        temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=12, repetition_penalty=1.2, seed=0
    )
    assert params.to_json() == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "max_new_tokens": 12,
        "repetition_penalty": 1.2,
        "seed": 0,
    }
    assert SamplingParams.from_json(params.to_json()) == params


def test_from_json_types_values():
    params = SamplingParams.from_json({"temperature": 1, "top_k": 20.0, "seed": 7})
    assert params.temperature == 1.0 and isinstance(params.temperature, float)
    assert params.top_k == 20 and isinstance(params.top_k, int)
    assert params.seed == 7 and params.max_new_tokens == 256


def test_errors_name_each_bad_key_under_the_prefix():
    with pytest.raises(ValidationError) as excinfo:
        SamplingParams.from_json({"temperature": 9, "top_k": 2.5, "beams": 2, "seed": 3})
    assert excinfo.value.message_dict == {
        "params.temperature": ["9.0 is out of range; must be between 0 and 5."],
        "params.top_k": ["Must be a whole number."],
        "params.beams": [
            "Unknown sampling parameter; use temperature, top_p, top_k, max_new_tokens, "
            "repetition_penalty, seed."
        ],
    }
    with pytest.raises(ValidationError) as excinfo:
        SamplingParams.from_json({"seed": None}, field_prefix="candidate_sampling.tiny")
    assert excinfo.value.message_dict == {
        "candidate_sampling.tiny.seed": ["Must be a number, not None."]
    }
    with pytest.raises(ValidationError) as excinfo:
        SamplingParams.from_json([1, 2])
    assert excinfo.value.message_dict == {"params": ["Sampling parameters must be an object."]}


def test_the_length_limit_is_the_setting():
    parley = {**settings.PARLEY, "GENERATION": {**settings.PARLEY["GENERATION"]}}
    parley["GENERATION"]["MAX_NEW_TOKENS"] = 64
    with override_settings(PARLEY=parley):
        assert SamplingParams.from_json({"max_new_tokens": 64}).max_new_tokens == 64
        with pytest.raises(ValidationError, match="between 1 and 64"):
            SamplingParams.from_json({"max_new_tokens": 65})


def test_a_projects_settings_are_the_defaults_under_what_was_sent():
    project_sampling = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256}
    params = SamplingParams.for_project(project_sampling, {"temperature": 0.5, "seed": 4})
    assert params.to_json() == {
        "temperature": 0.5,
        "top_p": 0.95,
        "max_new_tokens": 256,
        "seed": 4,
    }
    assert SamplingParams.for_project({}) == SamplingParams()
    with pytest.raises(ValidationError) as excinfo:
        SamplingParams.for_project(project_sampling, "hot")
    assert list(excinfo.value.message_dict) == ["params"]
    # A bad project setting is named like a bad parameter.
    with pytest.raises(ValidationError) as excinfo:
        SamplingParams.for_project({"top_p": 0}, {})
    assert list(excinfo.value.message_dict) == ["params.top_p"]


def test_clean_checks_a_value_built_in_code():
    SamplingParams(temperature=0, seed=2**32 - 1).clean()
    with pytest.raises(ValidationError) as excinfo:
        SamplingParams(top_p=1.5, seed=-1).clean()
    assert list(excinfo.value.message_dict) == ["params.top_p", "params.seed"]


def test_moving_the_seed_wraps_and_leaves_unseeded_alone():
    assert SamplingParams(seed=2**32 - 1).with_seed_moved(3).seed == 2
    assert SamplingParams(seed=5).with_seed_moved(0).seed == 5
    assert SamplingParams().with_seed_moved(3).seed is None
