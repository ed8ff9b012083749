"""Celery tasks of the trainer bridge: generation on the gpu queue, and its watchdog."""

import logging

from celery import shared_task

from trainer_bridge.generation import generations_requeue_stuck, generations_resend_lost
from trainer_bridge.worker import process_generation

logger = logging.getLogger(__name__)


@shared_task(
    name="trainer_bridge.tasks.generate",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def generate(request_id: int) -> dict:
    """Run a generation request (and others queued for its model) as one batch."""
    report = process_generation(request_id)
    if report.requests:
        logger.info(
            "Generation batch: %d requests, %d rows, %d done, %d failed, %d splits",
            report.requests, report.rows, report.done, report.failed, report.splits,
        )  # fmt: skip
    return report.__dict__


@shared_task(name="trainer_bridge.tasks.requeue_stuck_generations", ignore_result=True)
def requeue_stuck_generations() -> tuple[int, int]:
    requeued, failed = generations_requeue_stuck()
    if requeued or failed:
        logger.warning("Stuck generation requests: %d requeued, %d failed", requeued, failed)
    resent = generations_resend_lost()
    if resent:
        logger.warning("Queued generation requests whose message was lost: %d sent again", resent)
    return requeued, failed
