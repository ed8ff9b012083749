"""What a training run may be started with: its stage, snapshots, models, backend and
hyperparameters, each checked against the project (and the models loaded, last) before a start
writes or queues anything. Reads only; `training_runs` starts the run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from annotations.models import ModelVersion, Project
from exports.models import ExportSnapshot
from trainer_bridge.loading import resolve_source
from trainer_bridge.models import TrainingRun
from trainer_bridge.training.hyperparameters import (
    STAGES,
    HyperparameterError,
    Hyperparameters,
    hyperparameters_from_json,
)
from trainer_bridge.training_backends import command_template_problem
from trainer_bridge.training_events import training_settings
from trainer_bridge.training_selectors import project_training_models

# The snapshot kind each stage trains on (DESIGN.md §5).
STAGE_SNAPSHOT_KIND = {"sft": "sft", "rm": "preferences", "ppo": "prompts"}


def _model_named(project: Project, value: Any, *, kind: str) -> ModelVersion | str:
    """The project's model called `value` (or given as one), else the error to show."""
    if isinstance(value, ModelVersion):
        name = value.name
    elif isinstance(value, str) and value.strip():
        name = value.strip()
    else:
        return "Name a model."
    model = project_training_models(project).filter(name=name).first()
    if model is None:
        # One answer whether the name is unknown or another project's: no existence oracle.
        return f"{name[:100]} is not a model of this project."
    if model.kind != kind:
        return f"{model.name} is a {model.get_kind_display().lower()}; this needs a {kind} model."
    return model


def _snapshots(project: Project, stage: str | None, ids: Any) -> list[ExportSnapshot] | str:
    if isinstance(ids, int | str | ExportSnapshot):
        ids = [ids]
    if not isinstance(ids, Sequence) or not ids:
        return "Give at least one snapshot."
    wanted: list[int] = []
    for value in ids:
        pk = value.pk if isinstance(value, ExportSnapshot) else value
        try:
            if isinstance(pk, bool):
                raise ValueError
            wanted.append(int(pk))
        except (TypeError, ValueError):
            return f"{str(value)[:30]!r} is not a snapshot id."
    found = {s.pk: s for s in ExportSnapshot.objects.filter(project=project, pk__in=wanted)}
    snapshots = []
    for pk in dict.fromkeys(wanted):
        snapshot = found.get(pk)
        if snapshot is None:
            return f"No snapshot {pk} in this project."
        if snapshot.state != ExportSnapshot.State.DONE:
            return f"Snapshot {pk} is {snapshot.state}; start the run once it is done."
        needed = STAGE_SNAPSHOT_KIND.get(stage or "")
        if needed and snapshot.kind != needed:
            return (
                f"Snapshot {pk} is a {snapshot.kind} export; the {stage} stage trains on "
                f"{needed} snapshots."
            )
        splits = (snapshot.manifest or {}).get("splits", {})
        if not splits.get("train", {}).get("rows"):
            return f"Snapshot {pk} is empty: it has no training rows."
        snapshots.append(snapshot)
    return snapshots


def training_run_clean(
    *,
    project: Project,
    stage: Any,
    snapshots: Any,
    base_model: Any,
    reward_model: Any = None,
    hyperparameters: Mapping[str, Any] | None = None,
    backend: Any = None,
    check_models: bool = True,
) -> dict[str, Any]:
    """Every input of a run checked, or ValidationError with every problem keyed by its field:
    `stage`, `snapshots`, `base_model`, `reward_model`, `backend`, and `hyperparameters.<name>`
    (`hyperparameters` for a value that is not an object).

    With `check_models`, and once everything else is right, the base model is loaded as the
    stage needs it and a PPO reward model's tokenizer is compared with the policy's (the slow
    checks, so last).
    """
    errors: dict[str, str] = {}
    if not isinstance(stage, str) or stage not in STAGES:
        errors["stage"] = f"Unknown stage {str(stage)[:20]!r}; use one of: {', '.join(STAGES)}."
        stage = None
    backend = backend or training_settings()["DEFAULT_BACKEND"]
    if backend not in TrainingRun.Backend.values:
        errors["backend"] = (
            f"Unknown backend {str(backend)[:20]!r}; use one of: "
            f"{', '.join(TrainingRun.Backend.values)}."
        )
    elif backend == TrainingRun.Backend.COMMAND:
        problem = command_template_problem(training_settings().get("COMMAND_TEMPLATE", ""))
        if problem is None and not training_settings().get("REPORT_BASE_URL"):
            problem = "The command backend needs PARLEY_TRAINING_REPORT_BASE_URL for reports."
        if problem:
            errors["backend"] = problem
    chosen = _snapshots(project, stage, snapshots)
    if isinstance(chosen, str):
        errors["snapshots"] = chosen
    params: Hyperparameters | None = None
    if stage is not None:
        try:
            params = hyperparameters_from_json(stage, hyperparameters)
        except HyperparameterError as exc:
            errors[f"hyperparameters.{exc.field}" if exc.field else "hyperparameters"] = exc.message
    base = _model_named(project, base_model, kind=ModelVersion.Kind.POLICY)
    if isinstance(base, str):
        errors["base_model"] = base
    reward = None
    if stage == TrainingRun.Stage.PPO:
        reward = _model_named(project, reward_model, kind=ModelVersion.Kind.REWARD)
        if isinstance(reward, str):
            errors["reward_model"] = reward if reward_model else "The ppo stage needs one."
    elif reward_model not in (None, ""):
        errors["reward_model"] = "Only the ppo stage takes a reward model."
    if errors:
        raise ValidationError(errors)
    if check_models:
        _check_models(stage, base, reward)
    return {
        "stage": stage,
        "snapshots": chosen,
        "base_model": base,
        "reward_model": reward,
        "hyperparameters": params.to_json(),
        "backend": backend,
    }


def _check_models(stage: str, base: ModelVersion, reward: ModelVersion | None) -> None:
    from trainer_bridge.training.checks import (
        model_load_problem,
        reward_model_problem,
        tokenizer_mismatch,
    )

    try:
        base_path = str(resolve_source(base.source))
    except (OSError, ValueError) as exc:
        raise ValidationError({"base_model": f"{base.name} cannot be found: {exc}"}) from exc
    problem = model_load_problem(base_path, stage)
    if problem:
        raise ValidationError({"base_model": f"{base.name} does not load: {problem}"})
    if reward is None:
        return
    try:
        reward_path = str(resolve_source(reward.source))
    except (OSError, ValueError) as exc:
        raise ValidationError({"reward_model": f"{reward.name} cannot be found: {exc}"}) from exc
    problem = reward_model_problem(reward_path)
    if problem:
        raise ValidationError(
            {"reward_model": f"{reward.name} cannot be the reward model: {problem}"}
        )
    mismatch = tokenizer_mismatch(base_path, reward_path)
    if mismatch:
        raise ValidationError(
            {
                "reward_model": f"{reward.name} does not share {base.name}'s tokenizer "
                f"(PPO needs one tokenizer for policy, reference, reward and value models): "
                f"{mismatch}"
            }
        )


__all__ = ["STAGE_SNAPSHOT_KIND", "training_run_clean"]
