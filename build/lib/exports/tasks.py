"""Celery tasks of exports, on the `default` queue: building a snapshot, and its watchdog."""

import logging

from celery import shared_task

from exports.services import export_build, exports_requeue_stuck, exports_resend_lost

logger = logging.getLogger(__name__)


@shared_task(
    name="exports.tasks.build_export",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def build_export(snapshot_id: int) -> str | None:
    snapshot = export_build(snapshot_id=snapshot_id)
    return snapshot.state if snapshot is not None else None


@shared_task(name="exports.tasks.requeue_stuck_exports", ignore_result=True)
def requeue_stuck_exports() -> tuple[int, int]:
    requeued, failed = exports_requeue_stuck()
    if requeued or failed:
        logger.warning("Stuck exports: %d requeued, %d failed", requeued, failed)
    resent = exports_resend_lost()
    if resent:
        logger.warning("Queued exports whose message was lost: %d sent again", resent)
    return requeued, failed
