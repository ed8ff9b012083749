"""Celery tasks of the trainer bridge: generation on the gpu queue, training runs and reward
model evaluations on the train queue, and their watchdogs.

`generation_send` is how a request reaches the gpu queue and `training_run_send` how a run
reaches the train queue; the services that queue work (trainer_bridge.generation,
trainer_bridge.training_runs) and the watchdogs send through them. Nothing below this module
(the worker, batches, backends, the watchdogs' functions) imports it: the dependency goes one way.
"""

import logging

from celery import shared_task

from annotations.queueing import send_after_commit
from trainer_bridge.models import TrainingRun
from trainer_bridge.reward_evaluation import reward_evaluation_create, reward_evaluation_run
from trainer_bridge.training_backends import (
    run_cancel_command,
    run_command,
    run_local,
    run_store_reported,
)
from trainer_bridge.training_watchdog import training_runs_sweep
from trainer_bridge.watchdog import generations_requeue_stuck, generations_resend_lost
from trainer_bridge.worker import process_generation

logger = logging.getLogger(__name__)


@shared_task(
    name="trainer_bridge.tasks.generate",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def generate(request_id: int) -> dict:
    """Run a generation request (and others queued for its model) as one continuous batch."""
    report = process_generation(request_id)
    if report.requests:
        logger.info(
            "Generation batch: %d requests (%d joined while it ran), %d rows, %d steps, "
            "%d done, %d failed, %d splits",
            report.requests, report.joined, report.rows, report.steps, report.done,
            report.failed, report.splits,
        )  # fmt: skip
    return report.__dict__


def generation_send(request_id: int) -> None:
    """Send `generate` for the request once the current transaction commits; a broker that is
    down is logged and left to the watchdog (see annotations.queueing)."""
    send_after_commit(lambda: generate.delay(request_id), what=f"generation {request_id}")


@shared_task(name="trainer_bridge.tasks.requeue_stuck_generations", ignore_result=True)
def requeue_stuck_generations() -> tuple[int, int]:
    requeued, failed = generations_requeue_stuck(send=generation_send)
    if requeued or failed:
        logger.warning("Stuck generation requests: %d requeued, %d failed", requeued, failed)
    # Not in a transaction: sent at once.
    resent = generations_resend_lost(send=generate.delay)
    if resent:
        logger.warning("Queued generation requests whose message was lost: %d sent again", resent)
    return requeued, failed


# ---------------------------------------------------------------- training (the train queue)


@shared_task(
    name="trainer_bridge.tasks.train_run",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def train_run(run_id: int) -> str | None:
    """Run a queued training run on its backend; an RM that succeeds is evaluated next."""
    backend = TrainingRun.objects.filter(pk=run_id).values_list("backend", flat=True).first()
    if backend is None:
        return None
    state = run_command(run_id) if backend == TrainingRun.Backend.COMMAND else run_local(run_id)
    _after_training(run_id, state)
    return state


@shared_task(
    name="trainer_bridge.tasks.train_store_reported",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def train_store_reported(run_id: int) -> str | None:
    """Store and register the model of a command run whose job reported success."""
    state = run_store_reported(run_id)
    _after_training(run_id, state)
    return state


def _after_training(run_id: int, state: str | None) -> None:
    if state != TrainingRun.State.SUCCEEDED:
        return
    run = TrainingRun.objects.select_related("project", "result_model").get(pk=run_id)
    if run.stage == TrainingRun.Stage.RM and run.result_model is not None:
        evaluation = reward_evaluation_create(
            project=run.project, reward_model=run.result_model, requested_by=run.started_by
        )
        reward_evaluation_send(evaluation.pk)


@shared_task(name="trainer_bridge.tasks.train_cancel_job", ignore_result=True)
def train_cancel_job(run_id: int, external_id: str) -> None:
    """The configured cancel command for a command run's job (scancel, kubectl delete ...)."""
    run_cancel_command(run_id=run_id, external_id=external_id)


@shared_task(
    name="trainer_bridge.tasks.train_evaluate_reward",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def train_evaluate_reward(evaluation_id: int) -> str | None:
    evaluation = reward_evaluation_run(evaluation_id)
    return evaluation.state if evaluation is not None else None


def training_run_send(run_id: int) -> None:
    """Send `train_run` once the current transaction commits (a broker that is down is left to
    the watchdog)."""
    send_after_commit(lambda: train_run.delay(run_id), what=f"training run {run_id}")


def training_store_send(run_id: int) -> None:
    send_after_commit(lambda: train_store_reported.delay(run_id), what=f"storing run {run_id}")


def training_cancel_send(run_id: int, external_id: str) -> None:
    send_after_commit(
        lambda: train_cancel_job.delay(run_id, external_id), what=f"cancelling run {run_id}"
    )


def reward_evaluation_send(evaluation_id: int) -> None:
    send_after_commit(
        lambda: train_evaluate_reward.delay(evaluation_id),
        what=f"reward evaluation {evaluation_id}",
    )


@shared_task(name="trainer_bridge.tasks.requeue_stuck_training_runs", ignore_result=True)
def requeue_stuck_training_runs() -> dict:
    swept = training_runs_sweep(send_run=training_run_send, send_store=training_store_send)
    if swept.requeued or swept.failed or swept.resent or swept.stores_resent:
        logger.warning("Training watchdog: %s", swept)
    return swept.__dict__
