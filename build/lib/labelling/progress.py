"""Reads for a trainer's home: what they did today and this week, what they hold, what is left in
the queues, their recent submissions, and why the ranking queue is empty when it is."""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q
from django.utils import timezone

from annotations.models import Message, Project, Ranking, RankingSet
from labelling.claims import not_skipped_by
from labelling.comparisons import UNFINISHED_REQUEST_STATES, candidate_models
from labelling.models import Task
from labelling.rankings import ranking_tasks_eligible
from labelling.selectors import ProjectQueues, project_queues
from trainer_bridge.models import GenerationRequest

RECENT_SUBMISSIONS = 10
# Sets ready for the trainer are counted up to this many ("100+"): the queue is polled, and
# counting every open slot of a large project on each poll would cost for nothing.
READY_COUNT_CAP = 100
# How many finished candidate requests the estimate of the next set's arrival looks back on.
TIMING_SAMPLE = 20
# Kinds a trainer's home counts, in the order it shows them.
HOME_KINDS = (Task.Kind.DEMONSTRATION, Task.Kind.RANKING)


@dataclass(frozen=True)
class KindCount:
    kind: str
    label: str
    today: int
    week: int


@dataclass(frozen=True)
class RankingQueue:
    """Where the trainer's ranking queue stands, and why it is empty when it is."""

    ready: int  # sets the trainer may rank now (at most READY_COUNT_CAP)
    held: Task | None  # the ranking task they hold, if any
    sampling: int  # sets waiting for their candidates
    requests_waiting: int  # those sets' generation requests still queued or running
    expected_at: datetime | None  # when the next set should be ready (None: no estimate)
    not_for_you: int  # sets collecting rankings that the trainer ranked, wrote or passed on
    has_candidate_models: bool
    queue_depth: int
    project_active: bool

    @property
    def ready_text(self) -> str:
        return f"{self.ready}+" if self.ready >= READY_COUNT_CAP else str(self.ready)

    def fingerprint(self) -> str:
        """A short digest of what the queue says now: a poll that finds it unchanged gets no
        new copy, so screen readers hear the box only when it changes."""
        said = [str(self.ready), str(self.held.pk if self.held else ""), *self.reasons()]
        return hashlib.sha256("\n".join(said).encode()).hexdigest()[:16]

    @property
    def is_empty(self) -> bool:
        return self.ready == 0 and self.held is None

    def reasons(self, now: datetime | None = None) -> list[str]:
        """Why nothing is waiting, one sentence per cause, most useful first."""
        if not self.is_empty:
            return []
        now = now or timezone.now()
        lines: list[str] = []
        if not self.project_active:
            lines.append("This project is paused: no new sets are made.")
        if self.sampling:
            sets = "set is" if self.sampling == 1 else "sets are"
            requests = (
                f" ({self.requests_waiting} generation request"
                f"{'' if self.requests_waiting == 1 else 's'} queued or running)"
                if self.requests_waiting
                else " (their replies are in; the set opens within a minute)"
            )
            lines.append(f"{self.sampling} {sets} being sampled{requests}.")
            if self.requests_waiting:
                lines.append(self._expected_line(now))
        elif self.project_active and not self.has_candidate_models:
            lines.append("The project has no candidate models yet, so no sets are sampled.")
        elif self.project_active:
            lines.append(
                "No sets are being sampled right now. The project keeps up to "
                f"{self.queue_depth} sets in the queue, topped up about once a minute while "
                "there are contexts left to compare; a lead can also start one."
            )
        if self.not_for_you:
            sets = "set is" if self.not_for_you == 1 else "sets are"
            lines.append(
                f"{self.not_for_you} {sets} collecting rankings that you have ranked, wrote "
                "part of, or skipped: you are not asked to rank those."
            )
        return lines

    def _expected_line(self, now: datetime) -> str:
        if self.expected_at is None:
            return "There is no estimate yet of when the next set is ready."
        if self.expected_at <= now:
            return "The next set should be ready any moment now."
        minutes = max(1, round((self.expected_at - now).total_seconds() / 60))
        at = timezone.localtime(self.expected_at).strftime("%H:%M")
        return f"The next set is expected around {at} (in about {minutes} min)."


@dataclass(frozen=True)
class Submission:
    """One task the trainer finished, as their home shows it (read-only)."""

    task: Task
    summary: str
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrainerHome:
    project: Project
    queues: ProjectQueues
    counts: list[KindCount]
    held: list[Task]
    recent: list[Submission]
    ranking: RankingQueue


def period_starts(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The start of today and of this week (Monday), in the current time zone."""
    local = timezone.localtime(now or timezone.now())
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return today, today - timedelta(days=today.weekday())


def work_counts(*, user: AbstractBaseUser, project: Project) -> list[KindCount]:
    """Tasks the user finished today and this week, per kind, in one query."""
    today, week = period_starts()
    rows = (
        Task.objects.filter(
            project=project, assignee=user, state=Task.State.DONE, done_at__gte=week
        )
        .values("kind")
        .annotate(week=Count("id"), today=Count("id", filter=Q(done_at__gte=today)))
    )
    by_kind = {row["kind"]: row for row in rows}
    return [
        KindCount(
            kind=kind,
            label=Task.Kind(kind).label,
            today=by_kind.get(kind, {}).get("today", 0),
            week=by_kind.get(kind, {}).get("week", 0),
        )
        for kind in HOME_KINDS
    ]


def expected_next_set(*, project: Project, waiting: list[GenerationRequest]) -> datetime | None:
    """When the first of `waiting` (requests of sampling sets) should be done: the oldest one's
    queue time plus the median time from queue to done of the project's recent candidate
    requests. None without that history."""
    if not waiting:
        return None
    durations = [
        (finished - queued).total_seconds()
        for queued, finished in GenerationRequest.objects.filter(
            project=project,
            purpose=GenerationRequest.Purpose.CANDIDATES,
            state=GenerationRequest.State.DONE,
            finished_at__isnull=False,
        )
        .order_by("-finished_at")
        .values_list("queued_at", "finished_at")[:TIMING_SAMPLE]
    ]
    if not durations:
        return None
    oldest = min(request.queued_at for request in waiting)
    return oldest + timedelta(seconds=statistics.median(durations))


def held_ranking(tasks: list[Task]) -> Task | None:
    """The ranking task the queue shows as held, out of every task the trainer holds in the
    project: the one assigned first (as the database orders them, a missing time last)."""
    ranking = [task for task in tasks if task.kind == Task.Kind.RANKING]
    return min(
        ranking,
        key=lambda task: (task.assigned_at is None, task.assigned_at or timezone.now(), task.pk),
        default=None,
    )


def ranking_queue(
    *, user: AbstractBaseUser, project: Project, held_tasks: list[Task] | None = None
) -> RankingQueue:
    """The trainer's ranking queue: what they may rank now, and what is on its way.

    `held_tasks`, when the caller has already read them, are every task the trainer holds in
    the project (any kind): the held ranking task is taken from them instead of read again.
    """
    open_tasks = Task.objects.filter(project=project, kind=Task.Kind.RANKING, state=Task.State.OPEN)
    eligible = ranking_tasks_eligible(not_skipped_by(open_tasks, user), user)
    ready = eligible.order_by().values("ranking_set_id").distinct()[:READY_COUNT_CAP].count()
    if held_tasks is None:
        held = (
            Task.objects.filter(
                project=project, kind=Task.Kind.RANKING, state=Task.State.ASSIGNED, assignee=user
            )
            .order_by("assigned_at", "id")
            .first()
        )
    else:
        held = held_ranking(held_tasks)
    sampling_sets = RankingSet.objects.filter(project=project, state=RankingSet.State.SAMPLING)
    waiting = list(
        GenerationRequest.objects.filter(
            ranking_set_samplings__ranking_set__in=sampling_sets,
            state__in=UNFINISHED_REQUEST_STATES,
        )
        .distinct()
        .only("id", "queued_at")
    )
    collecting = RankingSet.objects.filter(project=project, state=RankingSet.State.COLLECTING)
    not_for_you = (
        collecting.filter(Q(authors=user) | Q(tasks__assignee=user) | Q(tasks__skips__user=user))
        .distinct()
        .count()
    )
    return RankingQueue(
        ready=ready,
        held=held,
        sampling=sampling_sets.count(),
        requests_waiting=len(waiting),
        expected_at=expected_next_set(project=project, waiting=waiting),
        not_for_you=not_for_you,
        has_candidate_models=bool(candidate_models(project)),
        queue_depth=project.comparison_queue_depth,
        project_active=project.is_active,
    )


def _ranking_lines(ranking: Ranking, texts: dict[int, str]) -> list[str]:
    lines = []
    for place, group in enumerate(ranking.order, start=1):
        names = " = ".join(_short(texts.get(pk, f"reply {pk}")) for pk in group)
        lines.append(f"{place}. {names}")
    if ranking.all_bad:
        lines.append("You marked every reply as bad.")
    return lines


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def recent_submissions(
    *, user: AbstractBaseUser, project: Project, limit: int = RECENT_SUBMISSIONS
) -> list[Submission]:
    """The user's latest finished tasks with what they stored, read-only, in a few queries.

    Only the user's own work: a ranking shows their order, never another trainer's.
    """
    tasks = list(
        Task.objects.filter(project=project, assignee=user, state=Task.State.DONE)
        .select_related("ranking_set__context")
        .order_by("-done_at", "-id")[:limit]
    )
    ranking_ids = [
        t.result.get("ranking") for t in tasks if t.kind == Task.Kind.RANKING and t.result
    ]
    rankings = {
        r.pk: r
        for r in Ranking.objects.filter(pk__in=[i for i in ranking_ids if i], annotator=user)
    }
    message_ids: set[int] = set()
    for ranking in rankings.values():
        message_ids.update(pk for group in ranking.order for pk in group)
    for task in tasks:
        if task.kind == Task.Kind.DEMONSTRATION and task.result:
            message_ids.update((task.result.get("messages") or [])[:1])
    texts = dict(Message.objects.filter(pk__in=message_ids).values_list("pk", "text"))
    submissions = []
    for task in tasks:
        if task.kind == Task.Kind.RANKING:
            ranking = rankings.get((task.result or {}).get("ranking"))
            context = task.ranking_set.context.text if task.ranking_set_id else ""
            submissions.append(
                Submission(
                    task=task,
                    summary=f"Ranked replies to “{_short(context, 70)}”",
                    lines=_ranking_lines(ranking, texts) if ranking else [],
                )
            )
        elif task.kind == Task.Kind.DEMONSTRATION:
            written = (task.result or {}).get("messages") or []
            first = texts.get(written[0], "") if written else ""
            count = len(written)
            submissions.append(
                Submission(
                    task=task,
                    summary=f"Wrote {count} turn{'' if count == 1 else 's'}: “{_short(first, 70)}”",
                )
            )
        else:
            submissions.append(Submission(task=task, summary=task.get_kind_display()))
    return submissions


def trainer_home(*, user: AbstractBaseUser, project: Project) -> TrainerHome:
    held = list(
        Task.objects.filter(project=project, assignee=user, state=Task.State.ASSIGNED).order_by(
            "lease_expires_at", "id"
        )
    )
    return TrainerHome(
        project=project,
        queues=project_queues(user=user, project=project),
        counts=work_counts(user=user, project=project),
        held=held,
        recent=recent_submissions(user=user, project=project),
        ranking=ranking_queue(user=user, project=project, held_tasks=held),
    )
