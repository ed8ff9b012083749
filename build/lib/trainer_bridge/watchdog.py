"""The generation watchdog (a beat task): requests whose worker died, and requests whose broker
message was lost.

Both hand requests back to the gpu queue through `send`, which the tasks module gives: this
module knows the database's record of what is queued, not the Celery task that runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotations.queueing import queue_depth
from trainer_bridge.models import GenerationRequest

State = GenerationRequest.State

GENERATION_QUEUE = "gpu"


def generation_settings() -> dict:
    return settings.PARLEY["GENERATION"]


@transaction.atomic
def generations_requeue_stuck(*, send: Callable[[int], object], now=None) -> tuple[int, int]:
    """Requests running past the timeout go back to the queue, or fail after the last attempt.

    A worker killed mid-batch leaves its requests running; this finds them. `send` is called
    with each requeued id inside this transaction, so it must send only once it commits.
    Returns (requeued, failed).
    """
    config = generation_settings()
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=config["RUNNING_TIMEOUT_SECONDS"])
    stuck = list(
        GenerationRequest.objects.select_for_update(skip_locked=True).filter(
            state=State.RUNNING, started_at__lt=cutoff
        )
    )
    requeued = failed = 0
    for request in stuck:
        if request.attempts >= config["MAX_ATTEMPTS"]:
            request.state = State.FAILED
            request.finished_at = now
            request.error = (
                f"No result after {request.attempts} attempts; the last worker "
                f"({request.worker or 'unknown'}) stopped answering."
            )
            failed += 1
        else:
            request.state = State.QUEUED
            request.started_at = None
            requeued += 1
            send(request.pk)
    GenerationRequest.objects.bulk_update(stuck, ["state", "finished_at", "error", "started_at"])
    return requeued, failed


def generations_resend_lost(*, send: Callable[[int], object], now=None) -> int:
    """Send queued requests again whose broker message was lost; returns how many.

    The database says what is queued; the broker only carries the wake-up call, and a Redis
    restart without persistence (or a send while it was down) loses it. A request queued for
    QUEUED_RESEND_SECONDS while the gpu queue holds no message at all has no message left:
    `send` is called with it again (a second delivery of one that was still on its way does
    nothing).
    """
    config = generation_settings()
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=config.get("QUEUED_RESEND_SECONDS", 120))
    lost = list(
        GenerationRequest.objects.filter(state=State.QUEUED, queued_at__lt=cutoff)
        .order_by("queued_at")
        .values_list("pk", flat=True)
    )
    if not lost or queue_depth(GENERATION_QUEUE) != 0:
        return 0
    for request_id in lost:
        send(request_id)
    return len(lost)
