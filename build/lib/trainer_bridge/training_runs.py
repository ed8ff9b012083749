"""Writes of training runs that people ask for: starting one (its inputs checked first by
`training_inputs`, once per idempotency key), cancelling it, taking in a job's reports, putting
its model to use, and evaluating a reward model against fresh rankings. The pages, the API and
`manage.py train` all call these."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotations.access import AccessDenied, can
from annotations.model_versions import project_use_model
from annotations.models import ModelVersion, Project
from trainer_bridge.models import RewardEvaluation, TrainingRun
from trainer_bridge.reward_evaluation import reward_evaluation_create
from trainer_bridge.tasks import (
    reward_evaluation_send,
    training_cancel_send,
    training_run_send,
    training_store_send,
)
from trainer_bridge.training_events import Applied, append_log, events_apply, parse_events
from trainer_bridge.training_inputs import training_run_clean

State = TrainingRun.State


@transaction.atomic
def training_run_start(
    *,
    project: Project,
    user: AbstractBaseUser | None,
    stage: Any,
    snapshots: Any,
    base_model: Any,
    reward_model: Any = None,
    hyperparameters: Mapping[str, Any] | None = None,
    backend: Any = None,
    idempotency_key: str = "",
) -> TrainingRun:
    """A queued run, sent to the train queue after the commit; every bad input is refused first
    (see `training_run_clean`). `user` None is the command line, which has every right.
    `idempotency_key` is stored with the run (see `training_run_start_once`)."""
    if user is not None and not can(user, project, "train"):
        raise AccessDenied(project, "train")
    clean = training_run_clean(
        project=project,
        stage=stage,
        snapshots=snapshots,
        base_model=base_model,
        reward_model=reward_model,
        hyperparameters=hyperparameters,
        backend=backend,
    )
    run = TrainingRun.objects.create(
        project=project,
        stage=clean["stage"],
        base_model=clean["base_model"],
        reward_model=clean["reward_model"],
        hyperparameters=clean["hyperparameters"],
        backend=clean["backend"],
        started_by=user,
        idempotency_key=idempotency_key,
        log_tail=append_log(
            "",
            f"Queued by {user.get_username() if user else 'the command line'}: "
            f"{clean['stage']} from {clean['base_model'].name} on snapshot(s) "
            f"{', '.join(f'#{s.pk}' for s in clean['snapshots'])}.",
        ),
    )
    run.snapshots.set(clean["snapshots"])
    training_run_send(run.pk)
    return run


@dataclass(frozen=True)
class RunStart:
    """What a start with an idempotency key did: `created` False when the key named a run."""

    run: TrainingRun
    created: bool


IDEMPOTENCY_KEY_MAX = TrainingRun._meta.get_field("idempotency_key").max_length
_KEY_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.:")


def idempotency_key_problem(key: Any) -> str | None:
    """Why `key` cannot be an idempotency key (1 to 100 of letters, digits, `-_.:`), or None."""
    if not isinstance(key, str) or not key:
        return "Send a key of 1 to 100 characters."
    if len(key) > IDEMPOTENCY_KEY_MAX:
        return f"The key has {len(key)} characters; at most {IDEMPOTENCY_KEY_MAX}."
    if not set(key) <= _KEY_CHARACTERS:
        return "Use only letters, digits and - _ . : (a UUID fits)."
    return None


@transaction.atomic
def training_run_start_once(
    *,
    project: Project,
    user: AbstractBaseUser,
    idempotency_key: str,
    stage: Any,
    snapshots: Any,
    base_model: Any,
    reward_model: Any = None,
    hyperparameters: Mapping[str, Any] | None = None,
    backend: Any = None,
) -> RunStart:
    """`training_run_start`, once per key and user: a retry or a double submit with the same
    key answers the run the first one started (whatever else it sends), never a second run.
    A key the user already used in another project raises ValidationError (`idempotency_key`)."""
    if problem := idempotency_key_problem(idempotency_key):
        raise ValidationError({"idempotency_key": problem})
    if not can(user, project, "train"):
        raise AccessDenied(project, "train")
    earlier = _run_for_key(user, idempotency_key, project)
    if earlier is not None:
        return RunStart(earlier, created=False)
    try:
        # A savepoint: a concurrent start with the same key that commits first makes this
        # insert fail on the unique constraint, and that start's run is the answer.
        with transaction.atomic():
            run = training_run_start(
                project=project,
                user=user,
                stage=stage,
                snapshots=snapshots,
                base_model=base_model,
                reward_model=reward_model,
                hyperparameters=hyperparameters,
                backend=backend,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        earlier = _run_for_key(user, idempotency_key, project)
        if earlier is None:
            raise
        return RunStart(earlier, created=False)
    return RunStart(run, created=True)


def _run_for_key(user: AbstractBaseUser, key: str, project: Project) -> TrainingRun | None:
    run = TrainingRun.objects.filter(started_by=user, idempotency_key=key).first()
    if run is not None and run.project_id != project.pk:
        raise ValidationError(
            {"idempotency_key": "This key already started a run in another project."}
        )
    return run


@transaction.atomic
def training_run_cancel(*, run: TrainingRun, user: AbstractBaseUser | None) -> TrainingRun:
    """Cancel a queued or running run: a local run's processes are ended by its worker within a
    second or two, a command run's job by the configured cancel command. A finished run raises
    ValidationError (keyed `state`)."""
    if user is not None and not can(user, run.project, "train"):
        raise AccessDenied(run.project, "train")
    locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if locked.is_finished:
        raise ValidationError({"state": f"Run {run.pk} already {locked.state}; nothing to cancel."})
    was_running = locked.state == State.RUNNING
    locked.state = State.CANCELLED
    locked.finished_at = timezone.now()
    locked.log_tail = append_log(
        locked.log_tail, f"Cancelled by {user.get_username() if user else 'the command line'}."
    )
    locked.save(update_fields=["state", "finished_at", "log_tail"])
    if was_running and locked.backend == TrainingRun.Backend.COMMAND and locked.external_id:
        training_cancel_send(locked.pk, locked.external_id)
    return locked


def training_run_report(*, run: TrainingRun, events: Any) -> Applied:
    """Take a job's report (`{"events": [...]}` through the API, with the run's token).

    Bad events raise ValidationError naming them (`events[2].step`) and nothing is recorded. A
    success queues the storing of the model on the train queue.
    """
    parsed = parse_events(events)
    with transaction.atomic():
        applied = events_apply(run_id=run.pk, attempt=run.attempts, events=parsed)
        if applied.succeeded:
            training_store_send(run.pk)
    return applied


@transaction.atomic
def training_run_use_model(*, run: TrainingRun, user: AbstractBaseUser | None, use: str) -> None:
    """Make a succeeded run's policy the project's draft model (`use="draft"`) or its candidate
    model (`use="candidate"`: the next ranking sets sample from it alone). Leads only, as every
    choice of the project's models."""
    if user is not None and not can(user, run.project, "manage"):
        raise AccessDenied(run.project, "manage")
    if use not in ("draft", "candidate"):
        raise ValidationError({"use": "Use it as the draft or the candidate model."})
    if run.state != State.SUCCEEDED or run.result_model is None:
        raise ValidationError({"run": f"Run {run.pk} has no model: it is {run.state}."})
    if run.result_model.kind != ModelVersion.Kind.POLICY:
        raise ValidationError(
            {"run": f"{run.result_model} is a reward model; only a policy writes replies."}
        )
    project_use_model(
        project=run.project,
        model_version=run.result_model,
        as_draft=use == "draft",
        as_candidate=use == "candidate",
        replace_candidates=True,
    )


@transaction.atomic
def reward_evaluation_request(
    *, run: TrainingRun, user: AbstractBaseUser | None
) -> RewardEvaluation:
    """Queue an evaluation of a succeeded RM run's model against the project's fresh rankings."""
    if user is not None and not can(user, run.project, "train"):
        raise AccessDenied(run.project, "train")
    if run.stage != TrainingRun.Stage.RM or run.result_model is None:
        raise ValidationError({"run": "Only a succeeded reward-model run can be evaluated."})
    evaluation = reward_evaluation_create(
        project=run.project, reward_model=run.result_model, requested_by=user
    )
    reward_evaluation_send(evaluation.pk)
    return evaluation


__all__ = [
    "IDEMPOTENCY_KEY_MAX",
    "RunStart",
    "idempotency_key_problem",
    "reward_evaluation_request",
    "training_run_cancel",
    "training_run_report",
    "training_run_start",
    "training_run_start_once",
    "training_run_use_model",
]
