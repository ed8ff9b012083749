"""Fixtures of the trainer bridge's tests. For training runs: stored files and run folders of this
test only, the tiny models registered in the project, data to export (demonstrations, ranking
sets with the learnable preference signal, prompts), finished snapshots built by the real export
path, and the train queue. For the generations page: a candidate model and the page's URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from annotations.model_versions import project_use_model
from annotations.models import ModelVersion
from exports.models import ExportSnapshot
from exports.services import export_build, export_request
from tests.factories import ModelVersionFactory, ranked_set, say, start, trainers
from tests.trainer_bridge.training.preference_signal import SignalSet, prompt_rows, ranking_sets
from trainer_bridge.models import TrainingRun
from trainer_bridge.services import model_version_register
from trainer_bridge.tiny_model import tiny_dialogues


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    """Stored files (snapshots, trained models) under a folder of this test only."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def training_dir(settings, tmp_path) -> Path:
    """Run folders (inputs, events, logs, outputs) under a folder of this test only."""
    settings.PARLEY = {
        **settings.PARLEY,
        "TRAINING": {**settings.PARLEY["TRAINING"], "WORK_DIR": tmp_path / "training"},
    }
    return tmp_path / "training"


@pytest.fixture
def tiny_models(project, tiny_model_paths) -> tuple[ModelVersion, ModelVersion]:
    """The tiny policy (the project's draft and candidate model) and the tiny reward model."""
    policy = model_version_register(
        name="tiny-policy", source=str(tiny_model_paths.policy), kind=ModelVersion.Kind.POLICY
    )
    reward = model_version_register(
        name="tiny-reward",
        source=str(tiny_model_paths.reward),
        kind=ModelVersion.Kind.REWARD,
        parent=policy,
    )
    project_use_model(project=project, model_version=policy)
    return policy, reward


def finished_rm_run(project, reward: ModelVersion, base: ModelVersion) -> TrainingRun:
    """A succeeded RM run whose model is `reward`, so PPO runs of the project may use it."""
    return TrainingRun.objects.create(
        project=project,
        stage=TrainingRun.Stage.RM,
        base_model=base,
        state=TrainingRun.State.SUCCEEDED,
        result_model=reward,
        hyperparameters={},
    )


# ---------------------------------------------------------------- data to export


def add_signal_sets(project, sets: list[SignalSet], *, author: ModelVersion, annotators) -> list:
    """Each set as a conversation cut before the assistant speaks, its replies written by
    `author`, ranked by every annotator the way the signal says (upbeat first, tied)."""
    made = []
    for signal_set in sets:
        first, *rest = signal_set.prompt
        context = start(project, first["content"], role=first["role"], source="prompt")
        for message in rest:
            context = say(context, message["content"])
        replies = [say(context, text, model=author) for text in signal_set.replies]
        made.append(
            ranked_set(
                project,
                context,
                replies,
                [(annotator, signal_set.consensus) for annotator in annotators],
            )
        )
    return made


def add_prompts(project, count: int, *, seed: int = 0) -> None:
    """`count` prompts in the project's pool (first user turns, some after a system prompt)."""
    for row in prompt_rows(count, seed=seed):
        first, *rest = row["prompt"]
        message = start(project, first["content"], role=first["role"], source="prompt")
        for turn in rest:
            message = say(message, turn["content"])


def add_demonstrations(project, count: int, *, writer, seed: int = 0) -> None:
    """`count` human-written conversations ending with an assistant turn (sft rows)."""
    for dialogue in tiny_dialogues(seed + 77, count):
        first, *rest = dialogue
        message = start(project, first["content"], role=first["role"], user=writer)
        for turn in rest:
            message = say(message, turn["content"], user=writer)


@pytest.fixture
def signal_data(project, tiny_models):
    """Ranking sets with the learnable signal (ranked by three trainers) and a prompt pool."""
    policy, _ = tiny_models
    annotators = trainers(project, 3, prefix="ranker")

    def make(sets: int = 12, prompts: int = 20, seed: int = 0):
        made = add_signal_sets(
            project, ranking_sets(sets, seed=seed), author=policy, annotators=annotators
        )
        add_prompts(project, prompts, seed=seed)
        return made

    return make


@pytest.fixture
def snapshot_of(project, engineer, media_root):
    """A finished snapshot of the project, built here as the export worker would."""

    def build(kind: str, **choices) -> ExportSnapshot:
        snapshot = export_request(project=project, user=engineer, kind=kind, choices=choices)
        built = export_build(snapshot_id=snapshot.pk)
        assert built is not None and built.state == "done", built and built.error
        return built

    return build


@pytest.fixture
def candidate_model(project) -> ModelVersion:
    """A model version the project samples candidates from (the generations page offers it)."""
    model = ModelVersionFactory(name="candidate-v1")
    project.candidate_models.add(model)
    return model


@pytest.fixture
def generations_url(project) -> str:
    return reverse("generations", args=[project.slug])


@pytest.fixture
def sent(mocker):
    """What was sent to the train queue (nothing runs: no worker in these tests)."""
    return mocker.patch("trainer_bridge.tasks.train_run.delay")
