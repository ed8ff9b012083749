"""Celery tasks of the trainer bridge: generation on the gpu queue, and its watchdog.

`generation_send` is how a request reaches the gpu queue; the services that queue requests
(trainer_bridge.generation) and the watchdog both send through it. Nothing below this module
(the worker, batches, the watchdog's functions) imports it: the dependency goes one way.
"""

import logging

from celery import shared_task

from annotations.queueing import send_after_commit
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
