"""Fixtures for the trainer bridge: the tiny model, built once per test session."""

import pytest

from trainer_bridge.tiny_model import TinyModelPaths, build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_paths(tmp_path_factory: pytest.TempPathFactory) -> TinyModelPaths:
    # Session-scoped: the build trains for a few seconds; tests must not write into it.
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)
