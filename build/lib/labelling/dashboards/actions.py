"""A lead's actions on collected rankings, as labelling carries them out: annotations changes the
rankings and the sets, and labelling opens the ranking tasks that collect the extra rankings.
Lifting an exclusion opens and cancels nothing: the trainer's claims pass again by themselves.

Open tasks go only to trainers who may rank the set (`labelling.rankings`): never its authors,
never anyone who held one of its tasks (so never the trainer whose ranking was excluded), and
no trainer under a standing exclusion (`labelling.claims`). After the change commits, the
dashboards' rollups of the project are rebuilt in the background.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Q

from annotations.audit import audit_log
from annotations.exclusions import (
    REOPENABLE,
    SET_TARGET,
    ExclusionOutcome,
    LiftOutcome,
    annotator_exclude,
    annotator_exclusion_lift,
    ranking_set_reopen,
    standing_exclusions,
)
from annotations.models import AnnotatorExclusion, AuditEntry, Project, Ranking, RankingSet
from labelling.dashboards.tasks import dashboards_rebuild
from labelling.models import Task

ACTIVE_SLOT_STATES = (Task.State.OPEN, Task.State.ASSIGNED)
ACTIONS_LOGGED = ("annotator.", "ranking_set.")


def exclusion_preview(
    *, project: Project, annotator: AbstractBaseUser, since: datetime
) -> tuple[int, int]:
    """(rankings, sets) that excluding `annotator` from `since` would take out and reopen."""
    rankings = Ranking.objects.filter(
        ranking_set__project=project, annotator=annotator, created_at__gte=since, is_excluded=False
    )
    sets = rankings.filter(ranking_set__state__in=REOPENABLE).values("ranking_set_id").distinct()
    return rankings.count(), sets.count()


def lift_preview(
    *, exclusion: AnnotatorExclusion, standing: list[AnnotatorExclusion] | None = None
) -> tuple[int, int]:
    """(rankings, sets) that lifting `exclusion` would count again and touch.

    `standing`, when the caller has already read them, are the project's standing exclusions:
    the trainer's other ones are looked up there instead of read again.
    """
    rankings = Ranking.objects.filter(excluded_by=exclusion, is_excluded=True)
    if standing is None:
        other = (
            standing_exclusions(exclusion.project)
            .filter(annotator_id=exclusion.annotator_id)
            .exclude(pk=exclusion.pk)
            .order_by("since")
            .first()
        )
    else:
        others = [
            e for e in standing if e.annotator_id == exclusion.annotator_id and e.pk != exclusion.pk
        ]
        other = min(others, key=lambda e: e.since, default=None)
    if other is not None:  # what it covers stays out
        rankings = rankings.filter(created_at__lt=other.since)
    return rankings.count(), rankings.values("ranking_set_id").distinct().count()


@dataclass(frozen=True)
class ReopenOutcome:
    ranking_set: RankingSet
    tasks_opened: int


@dataclass(frozen=True)
class LogRow:
    """One audit entry of these actions as the actions page lists it."""

    entry: AuditEntry
    set_id: int | None  # the reopened set, for a link to its drill-down
    changes: str  # "field: before → after; ..."


def _changes(before: object, after: object) -> str:
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    parts = []
    for key, value in after.items():
        was = f"{before[key]} → " if key in before and before[key] != value else ""
        parts.append(f"{key.replace('_', ' ')}: {was}{value}")
    return "; ".join(parts)


def action_log(project: Project, *, limit: int = 50) -> list[LogRow]:
    """The newest `limit` exclusions and reopenings of the project, newest first."""
    rows = []
    for entry in audit_log(project, actions=ACTIONS_LOGGED)[:limit]:
        set_id = None
        if entry.action == "ranking_set.reopen" and entry.target.startswith(SET_TARGET):
            number = entry.target.removeprefix(SET_TARGET)
            set_id = int(number) if number.isdigit() else None
        rows.append(LogRow(entry=entry, set_id=set_id, changes=_changes(entry.before, entry.after)))
    return rows


def ranking_slots_open(*, set_ids: Iterable[int]) -> int:
    """Open ranking tasks until each collecting set has one per ranking it still lacks.

    A set lacks `rankings_needed - rankings_count` rankings; open and assigned tasks already
    cover some. Returns how many tasks were created. New tasks take the set's `rankings_count`
    as their priority, as the ranking service keeps it.
    """
    sets = (
        RankingSet.objects.filter(pk__in=list(set_ids), state=RankingSet.State.COLLECTING)
        .annotate(
            active=Count(
                "tasks",
                filter=Q(tasks__kind=Task.Kind.RANKING, tasks__state__in=ACTIVE_SLOT_STATES),
            )
        )
        .order_by("pk")
    )
    slots = [
        Task(
            project_id=ranking_set.project_id,
            kind=Task.Kind.RANKING,
            ranking_set_id=ranking_set.pk,
            priority=ranking_set.rankings_count,
        )
        for ranking_set in sets
        for _ in range(
            ranking_set.rankings_needed - ranking_set.rankings_count - ranking_set.active
        )
    ]
    Task.objects.bulk_create(slots, batch_size=1000)
    return len(slots)


def _rebuild_rollups_after_commit(project: Project, since: datetime) -> None:
    """Rebuild the project's rollups from `since`'s (UTC) day on, once this commits: the sets
    an action changes completed that day or later."""
    project_id, day = project.pk, since.astimezone(UTC).date().isoformat()
    transaction.on_commit(lambda: dashboards_rebuild.delay(project_id, day))


@transaction.atomic
def trainer_exclude(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    since: datetime,
    actor: AbstractBaseUser,
    reason: str,
) -> tuple[ExclusionOutcome, int]:
    """Exclude a trainer's rankings from `since` on and reopen the sets they touched.

    The ranking tasks the trainer holds are cancelled (a ranking they submitted would not
    count) and replaced by open slots; while the exclusion stands they are handed no ranking
    task (`labelling.claims`). Returns what annotations changed and how many tasks opened.
    """
    # Locked first: a submit of one of them either commits before the exclusion reads the
    # trainer's rankings (and its ranking is excluded with the rest) or waits and finds its
    # task cancelled.
    held = list(
        Task.objects.select_for_update()
        .filter(
            project=project,
            kind=Task.Kind.RANKING,
            assignee=annotator,
            state=Task.State.ASSIGNED,
        )
        .order_by("pk")
        .values_list("pk", "ranking_set_id")
    )
    outcome = annotator_exclude(
        project=project, annotator=annotator, since=since, actor=actor, reason=reason
    )
    Task.objects.filter(pk__in=[pk for pk, _ in held]).update(
        state=Task.State.CANCELLED, lease_expires_at=None
    )
    held_sets = [set_id for _, set_id in held]
    opened = ranking_slots_open(set_ids=[*outcome.sets_reopened, *held_sets])
    # Every set the trainer touched completed after their ranking, so on or after `since`.
    _rebuild_rollups_after_commit(project, since)
    return outcome, opened


@transaction.atomic
def trainer_exclusion_lift(
    *, exclusion: AnnotatorExclusion, actor: AbstractBaseUser, reason: str
) -> LiftOutcome:
    """Lift a trainer's exclusion; the dashboards are rebuilt from its date once it commits."""
    outcome = annotator_exclusion_lift(exclusion=exclusion, actor=actor, reason=reason)
    # The sets recomputed completed after the trainer's rankings, so on or after `since`.
    _rebuild_rollups_after_commit(outcome.exclusion.project, outcome.exclusion.since)
    return outcome


@transaction.atomic
def set_reopen(
    *,
    ranking_set: RankingSet,
    actor: AbstractBaseUser,
    reason: str,
    extra: int = 1,
    needed_was: int | None = None,
) -> ReopenOutcome:
    """Ask `extra` more rankings of one set and open the tasks that collect them (refused if
    the set no longer needs `needed_was` rankings, see `ranking_set_reopen`)."""
    completed_at = ranking_set.completed_at
    reopened = ranking_set_reopen(
        ranking_set=ranking_set, actor=actor, reason=reason, extra=extra, needed_was=needed_was
    )
    opened = ranking_slots_open(set_ids=[reopened.pk])
    if completed_at is not None:
        # It leaves the complete sets of its day; a collecting set was in no rollup.
        _rebuild_rollups_after_commit(reopened.project, completed_at)
    return ReopenOutcome(ranking_set=reopened, tasks_opened=opened)
