"""The dashboards' rollups: per-day sums of a project's activity and ranking quality, kept
current by a beat task so that every dashboard page reads a few hundred small rows instead of
hundreds of thousands of rankings.

What is kept (models in `labelling.models`, one row per project and UTC day):

- `DailyRollup`: sets completed that day with their agreement sum, count and distinct values
  (distribution and bootstrap), the summed Krippendorff coincidences of the non-excluded
  rankings, a `FleissTally` per flag name, model-vs-model wins from each set's consensus (a
  human-written candidate counts as "human"), tasks done by kind with a histogram of seconds
  per task, generation latency (queued -> finished) as a histogram, human-written assistant
  turns, those started from a draft and their edit distances, active trainers.
- `TrainerDay`: per trainer, tasks done by kind and seconds per task; of their rankings of the
  sets completed that day (excluded ones included, counted apart): agreement with the
  leave-one-out consensus (`Ranking.consensus_agreement`), "all bad", flags raised, and pairs by
  length-difference bucket with how often the longer reply won; drafts used and kept unedited.
- `GroupDay`: set agreement by candidate model, by prompt language (the context message's) and
  by conversation tag (`Conversation.meta["tags"]`).

How they stay current: the beat task `labelling.dashboards.tasks.refresh_dashboards` runs every
`PARLEY_DASHBOARD_REFRESH_SECONDS` (default 60) and calls `rollups_refresh` for each active
project. A refresh recomputes, from the source tables, every day from the day of its previous
run minus `LATE_COMMIT_MARGIN` onwards, replacing those days' rows in one transaction; days
before that are left as they are. So figures are at most one refresh interval (plus the
refresh's own run time) stale, and a refresh costs one day or two of rows, however large the
project. A row written with a timestamp older than the margin when it commits (a transaction
held open that long) is picked up only by the next `rollups_rebuild`.

Which day a row counts on: a set (and every ranking of it) on its `completed_at` day, a task on
its `done_at` day, an assistant turn on its `created_at` day, a generation on its `finished_at`
day.

`rollups_rebuild` recomputes everything; it runs after a lead's action changes past figures
(an exclusion re-finalizes old sets, a reopen takes a set out of the complete ones): through
`transaction.on_commit(lambda: dashboards_rebuild.delay(project.pk))`, see `tasks.py`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from annotations.models import Project
from labelling.dashboards.gathering import Gathered, day_start, gather, utc_day
from labelling.dashboards.totals import FIELDS, TrainerTotals
from labelling.models import DailyRollup, DashboardState, GroupDay, TrainerDay

LATE_COMMIT_MARGIN = timedelta(minutes=10)

logger = logging.getLogger(__name__)

# --- running totals of trainers ------------------------------------------------------------------


def trainer_totals_on(
    project: Project, day: date | None, user_id: int | None = None
) -> list[TrainerTotals]:
    """Each trainer's running totals as of the end of `day` (their last row on or before it;
    None: nothing yet), one trainer with `user_id`. Two queries, one row per trainer."""
    if day is None:
        return []
    rows = TrainerDay.objects.filter(project=project, day__lte=day)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    latest = list(rows.values("user_id").annotate(last=Max("day")).order_by())
    if not latest:
        return []
    wanted = Q()
    for row in latest:
        wanted |= Q(user_id=row["user_id"], day=row["last"])
    return [
        TrainerTotals(user_id=row["user_id"]).add(row)
        for row in TrainerDay.objects.filter(project=project)
        .filter(wanted)
        .values("user_id", *FIELDS)
    ]


# --- writing -----------------------------------------------------------------------------------


def _write(rollup: Gathered, project: Project, since_day: date | None) -> None:
    for model in (DailyRollup, TrainerDay, GroupDay):
        rows = model.objects.filter(project=project)
        if since_day is not None:
            rows = rows.filter(day__gte=since_day)
        rows.delete()
    active: dict[date, int] = defaultdict(int)
    for (day, _), trainer in rollup.trainers.items():
        if trainer.tasks_done:
            active[day] += 1
    DailyRollup.objects.bulk_create(
        (totals.row(project, day, active[day]) for day, totals in sorted(rollup.days.items())),
        batch_size=500,
    )
    # Running totals: each trainer's last row before the recomputed days, plus each day.
    running = (
        {
            totals.user_id: totals
            for totals in trainer_totals_on(project, since_day - timedelta(days=1))
        }
        if since_day is not None
        else {}
    )
    rows = []
    for (day, user_id), daily in sorted(rollup.trainers.items()):
        total = running.setdefault(user_id, TrainerTotals(user_id=user_id))
        total.add(daily.fields())
        rows.append(TrainerDay(project=project, day=day, user_id=user_id, **total.fields()))
    TrainerDay.objects.bulk_create(rows, batch_size=2000)
    GroupDay.objects.bulk_create(
        (
            GroupDay(
                project=project,
                day=day,
                dimension=dimension,
                value=value,
                sets=group.sets,
                agreement_sum=group.agreement_sum,
                agreement_count=group.agreement_count,
            )
            for (day, dimension, value), group in sorted(rollup.groups.items())
        ),
        batch_size=2000,
    )


def _recompute(project: Project, since_day: date | None) -> int:
    since = day_start(since_day) if since_day is not None else None
    gathered = gather(project, since)
    _write(gathered, project, since_day)
    return gathered.sources


def _locked_state(project: Project) -> DashboardState:
    DashboardState.objects.get_or_create(project=project)
    return DashboardState.objects.select_for_update().get(project=project)


@transaction.atomic
def rollups_refresh(*, project: Project) -> int:
    """Bring the project's rollups up to now; returns how many source rows were read.

    Recomputes the days from the previous refresh (less `LATE_COMMIT_MARGIN`) on; the first
    refresh of a project builds everything. Runs one at a time per project (a row lock).
    """
    state = _locked_state(project)
    now = timezone.now()
    since_day = (
        utc_day(state.refreshed_through - LATE_COMMIT_MARGIN)
        if state.refreshed_through is not None
        else None
    )
    sources = _recompute(project, since_day)
    state.refreshed_through = now
    if since_day is None:
        state.rebuilt_at = now
    state.save(update_fields=["refreshed_through", "rebuilt_at"])
    return sources


@transaction.atomic
def rollups_rebuild(*, project: Project, since: date | None = None) -> None:
    """Recompute the project's rollups from the source tables: all of them, or with `since`
    the days from then on (what changed on or after that day: an exclusion from its date, a
    reopened set from the day it had completed), plus whatever a refresh would redo."""
    state = _locked_state(project)
    now = timezone.now()
    since_day = None
    if since is not None and state.refreshed_through is not None:
        since_day = min(since, utc_day(state.refreshed_through - LATE_COMMIT_MARGIN))
    _recompute(project, since_day)
    state.refreshed_through = now
    if since_day is None:
        state.rebuilt_at = now
    state.save(update_fields=["refreshed_through", "rebuilt_at"])


def rollups_refresh_all(projects: Iterable[Project] | None = None) -> int:
    """Refresh every active project (the beat task); returns the source rows read. A project
    whose refresh fails is logged and left for the next run; the others still refresh."""
    if projects is None:
        projects = Project.objects.filter(is_active=True).order_by("pk")
    read = 0
    for project in projects:
        try:
            read += rollups_refresh(project=project)
        except Exception:
            logger.exception("Refreshing the dashboards of project %s failed", project.slug)
    return read
