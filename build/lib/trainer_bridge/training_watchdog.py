"""The training watchdog (a beat task): runs whose worker or job went silent, runs whose broker
message was lost, and reported successes whose model was never stored.

It hands runs back to the train queue through the `send_*` functions the tasks module gives, as
the generation watchdog does: this module knows the database's record of runs, not the Celery
tasks that run them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from annotations.queueing import queue_depth
from trainer_bridge.models import TrainingRun
from trainer_bridge.training_events import append_log, training_settings

State = TrainingRun.State
Backend = TrainingRun.Backend

TRAIN_QUEUE = "train"


@dataclass(frozen=True)
class Swept:
    requeued: int = 0
    failed: int = 0
    resent: int = 0
    stores_resent: int = 0


def training_runs_sweep(
    *,
    send_run: Callable[[int], object],
    send_store: Callable[[int], object],
    now=None,
) -> Swept:
    """Everything the watchdog does, in one pass; returns what it did.

    - A local run with no sign of life for STALE_SECONDS lost its worker (killed, out of memory,
      the machine gone): queued again for a new attempt, or failed with its log tail after
      MAX_ATTEMPTS. A command run silent for COMMAND_STALE_SECONDS is failed: nobody can tell
      whether its job still runs, so it is never started twice.
    - A run whose job reported success but whose model was not stored after STALE_SECONDS of
      silence gets its store task again.
    - Queued runs whose message the broker lost are sent again (see `training_runs_resend_lost`).
    """
    config = training_settings()
    now = now or timezone.now()
    requeued = failed = stores = 0
    with transaction.atomic():
        stuck = list(
            TrainingRun.objects.select_for_update(skip_locked=True).filter(
                state=State.RUNNING,
                heartbeat_at__lt=now - timedelta(seconds=config["STALE_SECONDS"]),
            )
        )
        for run in stuck:
            if run.backend == Backend.COMMAND and run.finish_reported_at is not None:
                send_store(run.pk)
                stores += 1
                continue
            if run.backend == Backend.COMMAND:
                silent_for = timedelta(seconds=config["COMMAND_STALE_SECONDS"])
                if run.heartbeat_at >= now - silent_for:
                    continue
                _fail(run, now, f"The job sent no report for {_duration(silent_for)}.")
                failed += 1
            elif run.attempts >= config["MAX_ATTEMPTS"]:
                _fail(
                    run,
                    now,
                    f"The worker running this stopped answering ({run.worker or 'unknown'}), "
                    f"{run.attempts} times (the limit is {config['MAX_ATTEMPTS']}).",
                )
                failed += 1
            else:
                run.state = State.QUEUED
                run.queued_at = now
                run.log_tail = append_log(
                    run.log_tail,
                    f"The worker running attempt {run.attempts} ({run.worker or 'unknown'}) "
                    "stopped answering; queued again.",
                )
                run.save(update_fields=["state", "queued_at", "log_tail"])
                send_run(run.pk)
                requeued += 1
    resent = training_runs_resend_lost(send_run=send_run, now=now)
    return Swept(requeued=requeued, failed=failed, resent=resent, stores_resent=stores)


def _fail(run: TrainingRun, now, error: str) -> None:
    run.state = State.FAILED
    run.error = error
    run.finished_at = now
    run.log_tail = append_log(run.log_tail, f"Failed: {error}")
    run.save(update_fields=["state", "error", "finished_at", "log_tail"])


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def training_runs_resend_lost(*, send_run: Callable[[int], object], now=None) -> int:
    """Send queued runs again that waited QUEUED_RESEND_SECONDS while the train queue held no
    message (a broker restart without persistence, a send while it was down). A second delivery
    of a run still on its way does nothing: the first claim wins."""
    config = training_settings()
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=config["QUEUED_RESEND_SECONDS"])
    lost = list(
        TrainingRun.objects.filter(state=State.QUEUED, queued_at__lt=cutoff)
        .order_by("queued_at")
        .values_list("pk", flat=True)
    )
    if not lost or queue_depth(TRAIN_QUEUE) != 0:
        return 0
    for run_id in lost:
        send_run(run_id)
    return len(lost)
