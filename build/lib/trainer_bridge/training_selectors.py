"""Reads about training runs: a project's runs, the models a run may start from, a run's metrics
as chart series, and the latest evaluation of a reward model."""

from __future__ import annotations

import math
from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from annotations.models import ModelVersion, Project
from exports.models import ExportSnapshot
from trainer_bridge.models import RewardEvaluation, TrainingMetric, TrainingRun

# What a chart draws at most: a run of 100,000 steps is thinned to this many points.
MAX_CHART_POINTS = 600
CHART_METRICS = ("loss", "accuracy", "reward", "kl")


def project_runs(project: Project) -> QuerySet[TrainingRun]:
    """The project's runs, newest first, with their models, snapshots and who started them."""
    return (
        TrainingRun.objects.filter(project=project)
        .select_related(
            "base_model", "reward_model", "result_model", "result_model__parent", "started_by"
        )
        .prefetch_related(Prefetch("snapshots", queryset=ExportSnapshot.objects.order_by("pk")))
    )


def project_training_models(project: Project) -> QuerySet[ModelVersion]:
    """Models a run of this project may start from or be rewarded by: the project's draft and
    candidate models, the models its runs trained, and the models its runs started from."""
    return ModelVersion.objects.filter(
        Q(draft_projects=project)
        | Q(candidate_projects=project)
        | Q(training_run__project=project)
        | Q(training_runs_from__project=project)
    ).distinct()


def run_metric_series(run: TrainingRun, *, max_points: int = MAX_CHART_POINTS) -> dict[str, Any]:
    """The run's metrics as `{"steps": [...], "series": {"loss": [...], ...}}`, one value per
    step (null where a step lacks a metric), thinned evenly to at most `max_points` steps (the
    last step always kept)."""
    metrics = TrainingMetric.objects.filter(run=run).order_by("step")
    total = metrics.count()
    stride = max(1, math.ceil(total / max_points)) if max_points else 1
    rows = list(metrics.values_list("step", "values"))
    if stride > 1:
        rows = rows[::stride] + ([rows[-1]] if (total - 1) % stride else [])
    names: list[str] = []
    for _, values in rows:
        for name in values:
            if name not in names:
                names.append(name)
    names.sort(key=lambda n: (CHART_METRICS.index(n) if n in CHART_METRICS else 99, n))
    return {
        "steps": [step for step, _ in rows],
        "series": {name: [values.get(name) for _, values in rows] for name in names},
        "points": len(rows),
        "total_steps": total,
    }


def run_metrics_after(run: TrainingRun, *, after: int | None, limit: int) -> list[TrainingMetric]:
    """Metrics rows in step order, after step `after` (all when None), at most `limit`."""
    rows = TrainingMetric.objects.filter(run=run).order_by("step")
    if after is not None:
        rows = rows.filter(step__gt=after)
    return list(rows[:limit])


def latest_metrics(run: TrainingRun) -> dict[str, Any]:
    """The last reported value of each metric, with the step it came at."""
    latest: dict[str, Any] = {}
    for step, values in (
        TrainingMetric.objects.filter(run=run).order_by("-step").values_list("step", "values")[:200]
    ):
        for name, value in values.items():
            if name not in latest and value is not None:
                latest[name] = {"step": step, "value": value}
    return latest


def reward_evaluations(model_version: ModelVersion) -> QuerySet[RewardEvaluation]:
    return RewardEvaluation.objects.filter(reward_model=model_version).select_related(
        "requested_by"
    )


def latest_reward_evaluation(model_version: ModelVersion | None) -> RewardEvaluation | None:
    if model_version is None:
        return None
    return reward_evaluations(model_version).first()
