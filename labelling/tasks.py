"""Celery tasks of the labelling app: thin wrappers around services."""

import logging

from celery import shared_task

from labelling.services import task_leases_expire

logger = logging.getLogger(__name__)


@shared_task(name="labelling.tasks.expire_task_leases", ignore_result=True)
def expire_task_leases() -> int:
    count = task_leases_expire()
    if count:
        logger.info("Returned %d tasks with expired leases to the pool", count)
    return count
