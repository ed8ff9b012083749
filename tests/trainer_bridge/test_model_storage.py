"""Trained models kept through the storage API: stored folder by folder, and loaded from a
file-system storage in place or from another storage through a local copy made once."""

from __future__ import annotations

import shutil

import pytest

from trainer_bridge.loading import load_policy, resolve_source
from trainer_bridge.model_storage import local_model_folder, storage_source, store_model_folder


def test_a_model_in_a_storage_without_paths_is_copied_once_and_loads(
    settings, tmp_path, tiny_model_paths
):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    model = tmp_path / "trained"
    shutil.copytree(tiny_model_paths.policy, model)
    (model / "nested").mkdir()
    (model / "nested" / "note.txt").write_text("kept")
    stored = store_model_folder(model, "training/alpha/run-1/attempt-1/model")
    assert stored == sum(1 for p in model.rglob("*") if p.is_file())

    source = storage_source("training/alpha/run-1/attempt-1/model")
    model_dir = tmp_path / "models"
    local = local_model_folder(source, model_dir=model_dir)
    assert local == model_dir / "storage" / "training/alpha/run-1/attempt-1/model"
    assert (local / "nested" / "note.txt").read_text() == "kept"
    assert local_model_folder(source, model_dir=model_dir) == local  # copied once
    settings.PARLEY = {**settings.PARLEY, "MODEL_DIR": model_dir}
    assert resolve_source(source) == local
    tokenizer, policy = load_policy(source)
    assert policy.config.vocab_size > 0 and tokenizer.pad_token


def test_a_stored_folder_name_cannot_climb_out(settings):
    with pytest.raises(ValueError):
        local_model_folder("storage:../../etc")
    with pytest.raises(ValueError):
        local_model_folder("storage:")
