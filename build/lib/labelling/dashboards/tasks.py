"""Celery tasks that keep the dashboards' rollups current: thin wrappers around `rollups`.

Registered through `CELERY_IMPORTS` in the settings (autodiscovery reads only `<app>.tasks`).
"""

import logging
from datetime import date

from celery import shared_task

from annotations.models import Project
from labelling.dashboards.rollups import rollups_rebuild, rollups_refresh_all

logger = logging.getLogger(__name__)


@shared_task(name="labelling.dashboards.tasks.refresh_dashboards", ignore_result=True)
def refresh_dashboards() -> int:
    """Bring every active project's rollups up to now (beat, PARLEY_DASHBOARD_REFRESH_SECONDS)."""
    return rollups_refresh_all()


@shared_task(name="labelling.dashboards.tasks.dashboards_rebuild", ignore_result=True)
def dashboards_rebuild(project_id: int, since: str | None = None) -> None:
    """Recompute one project's rollups (after a lead's exclusion or reopen changed old sets):
    all of them, or from the day `since` (an ISO date) on.

    Queue it with `transaction.on_commit(lambda: dashboards_rebuild.delay(project.pk, day))`.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return
    day = date.fromisoformat(since) if since else None
    rollups_rebuild(project=project, since=day)
    logger.info("Rebuilt the dashboards of project %s from %s", project.slug, since or "the start")
