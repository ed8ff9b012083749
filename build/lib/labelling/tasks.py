"""Celery tasks of the labelling app: thin wrappers around services."""

import logging

from celery import shared_task

from labelling.comparisons import comparisons_assemble_ready, comparisons_top_up_all
from labelling.services import task_leases_expire

logger = logging.getLogger(__name__)


@shared_task(name="labelling.tasks.expire_task_leases", ignore_result=True)
def expire_task_leases() -> int:
    count = task_leases_expire()
    if count:
        logger.info("Returned %d tasks with expired leases to the pool", count)
    return count


@shared_task(name="labelling.tasks.assemble_ranking_sets", ignore_result=True)
def assemble_ranking_sets() -> int:
    """Turn sampling sets whose candidates are in into ranking tasks (beat, every few seconds)."""
    count = comparisons_assemble_ready()
    if count:
        logger.info("%d ranking sets ready for ranking", count)
    return count


@shared_task(name="labelling.tasks.top_up_comparisons", ignore_result=True)
def top_up_comparisons() -> int:
    """Keep each active project's queue of ranking sets at its target depth (beat)."""
    count = comparisons_top_up_all()
    if count:
        logger.info("Started %d ranking sets", count)
    return count
