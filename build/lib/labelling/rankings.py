"""The "ranking" task kind: which sets a trainer may rank, what they see, and storing a ranking.

The shared lifecycle (claims under row locks, leases, skip, idempotent submit) lives in
`labelling.claims`; this module adds only what is particular to ranking a set of replies. What a
trainer sends is checked in `labelling.ranking_input`; rankings are stored by annotations.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet

from annotations.models import Message, Project, Ranking, RankingCandidate, RankingSet
from annotations.rankings import ranking_create
from annotations.selectors import thread_to
from annotations.services import message_add
from labelling.leases import TaskConflict
from labelling.models import Task, TaskSkip
from labelling.ranking_input import clean_ranking
from labelling.taskkind import ClaimSql, TaskKind

KIND = Task.Kind.RANKING


def flag_labels(project: Project) -> list[dict]:
    """The project's yes/no labels a trainer may put on a candidate, in schema order."""
    return [
        {"name": label["name"], "description": label.get("description", "")}
        for label in project.label_schema or []
        if label.get("kind") == "flag" and label.get("name")
    ]


# ---------------------------------------------------------------------------- eligibility


def ranking_tasks_eligible(queryset: QuerySet[Task], user: AbstractBaseUser) -> QuerySet[Task]:
    """Open ranking tasks `user` may get, sets that already have rankings first.

    A trainer never ranks a set twice, never ranks a set whose context or candidates they wrote,
    and is not offered a set they passed on. Three lookups cover that, because of what the
    lifecycle keeps true: a set is assembled with everyone who wrote its thread or a candidate in
    `RankingSet.authors` and only then gets tasks; every ranking of such a set comes through a
    task that keeps its trainer as assignee; and a set's open tasks are cancelled when it stops
    collecting. Each lookup is its own NOT EXISTS, which PostgreSQL turns into an anti-join that
    probes an index per task walked, however long the trainer's history.
    """
    set_ref = OuterRef("ranking_set_id")
    authored = RankingSet.authors.through.objects.filter(rankingset_id=set_ref, user_id=user.pk)
    # Any task of the set the user holds or finished (an open task has no assignee).
    held = Task.objects.filter(ranking_set_id=set_ref, assignee_id=user.pk)
    skipped = TaskSkip.objects.filter(task__ranking_set_id=set_ref, user_id=user.pk)
    return (
        queryset.exclude(Exists(authored))
        .exclude(Exists(held))
        .exclude(Exists(skipped))
        # Task.priority mirrors the set's rankings_count, so the claim walks the task_claim_order
        # index and stops at the first eligible slot instead of sorting every open task.
        .order_by("-priority", "id")
    )


# `ranking_tasks_eligible` for the claim statement on PostgreSQL (labelling.claims), with the same
# three NOT EXISTS: sets the trainer wrote, holds or held a slot of, or passed on.
RANKING_CLAIM_SQL = ClaimSql(
    where="""
        NOT EXISTS (
            SELECT FROM annotations_rankingset_authors author
            WHERE author.rankingset_id = task.ranking_set_id AND author.user_id = %(user_id)s
        )
        AND NOT EXISTS (
            SELECT FROM labelling_task mine
            WHERE mine.ranking_set_id = task.ranking_set_id AND mine.assignee_id = %(user_id)s
        )
        AND NOT EXISTS (
            SELECT FROM labelling_taskskip passed
            JOIN labelling_task slot ON slot.id = passed.task_id
            WHERE slot.ranking_set_id = task.ranking_set_id AND passed.user_id = %(user_id)s
        )
    """,
    order_by="task.priority DESC, task.id",
)


# ---------------------------------------------------------------------------- describe


def candidate_order_for(*, ranking_set_id: int, viewer_id: int, candidate_ids: list[int]) -> list:
    """The candidates shuffled for one viewer: stable for them, different between trainers.

    Seeded from a digest rather than hash() so every process (web, API) agrees on the order.
    """
    digest = hashlib.sha256(f"ranking:{ranking_set_id}:{viewer_id}".encode()).digest()
    shuffled = list(candidate_ids)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(shuffled)
    return shuffled


@dataclass
class RankingView:
    """What a trainer is shown for one ranking task."""

    ranking_set: RankingSet
    context: list[Message]
    candidates: list[Message]  # in this trainer's shuffled order
    labels: list[dict]


def _candidates_of(task: Task) -> list[RankingCandidate]:
    """The set's candidates with their messages, and through them the set and its context.

    Submitting reads them to check the order and then describes the task: read them once.
    """
    if not hasattr(task, "_candidates"):
        task._candidates = list(
            RankingCandidate.objects.filter(ranking_set_id=task.ranking_set_id)
            .select_related("message", "ranking_set__context")
            .order_by()
        )
    return task._candidates


def ranking_view(task: Task) -> RankingView:
    entries = _candidates_of(task)
    if entries:
        ranking_set = entries[0].ranking_set
    else:
        ranking_set = RankingSet.objects.select_related("context").get(pk=task.ranking_set_id)
    ranking_set.project = task.project
    by_id = {entry.message_id: entry.message for entry in entries}
    order = candidate_order_for(
        ranking_set_id=ranking_set.pk,
        viewer_id=task.assignee_id or -task.pk,
        candidate_ids=sorted(by_id),
    )
    return RankingView(
        ranking_set=ranking_set,
        context=thread_to(ranking_set.context),
        candidates=[by_id[pk] for pk in order],
        labels=flag_labels(ranking_set.project),
    )


def ranking_task_describe(task: Task) -> dict:
    view = ranking_view(task)
    return {
        "ranking_set": view.ranking_set.pk,
        "context": [{"id": m.pk, "role": m.role, "content": m.text} for m in view.context],
        "candidates": [{"id": m.pk, "role": m.role, "content": m.text} for m in view.candidates],
        "labels": view.labels,
    }


# ---------------------------------------------------------------------------- submit


def _set_to_rank(task: Task, user: AbstractBaseUser) -> RankingSet | None:
    """The task's set locked for counting up, with its context and whether `user` ranked it."""
    ranked_by_user = Exists(Ranking.objects.filter(ranking_set=OuterRef("pk"), annotator=user))
    return (
        RankingSet.objects.select_for_update(of=("self",))
        .select_related("context")
        .annotate(ranked_by_user=ranked_by_user)
        .filter(pk=task.ranking_set_id)
        .first()
    )


def ranking_submit(*, task: Task, user: AbstractBaseUser, data: dict) -> dict:
    """Store the trainer's ranking of the task's set; finalize the set at its N-th ranking.

    Runs inside `task_submit`'s transaction with the task row locked. The set's row is locked
    too, so concurrent rankings of one set count up one at a time and exactly one of them sees
    the count reach N and finalizes it.
    """
    ranking_set = _set_to_rank(task, user)
    if ranking_set is None:
        raise RankingSet.DoesNotExist(f"Ranking set {task.ranking_set_id} does not exist.")
    ranking_set.project = task.project
    if ranking_set.state == RankingSet.State.CANCELLED:
        raise TaskConflict("This ranking set was cancelled by a lead.", code="set_cancelled")
    if ranking_set.state != RankingSet.State.COLLECTING:
        raise TaskConflict(
            "This ranking set already has all the rankings it needs.", code="set_not_collecting"
        )
    if ranking_set.ranked_by_user:
        raise TaskConflict("You have already ranked this set.", code="already_ranked")

    cleaned = clean_ranking(
        data,
        candidate_ids={entry.message_id for entry in _candidates_of(task)},
        allowed_flags=[label["name"] for label in flag_labels(ranking_set.project)],
    )
    rewrite = None
    if cleaned["rewrite"] is not None:
        try:
            rewrite = message_add(
                parent=ranking_set.context,
                role=Message.Role.ASSISTANT,
                text=cleaned["rewrite"],
                author_user=user,
                meta={"source": "ranking_rewrite", "ranking_set": ranking_set.pk},
            )
        except ValidationError as exc:
            raise ValidationError({"rewrite": exc.messages}) from None

    ranking = ranking_create(
        ranking_set=ranking_set,
        annotator=user,
        order=cleaned["order"],
        flags=cleaned["flags"],
        all_bad=cleaned["all_bad"],
        rewrite=rewrite,
        time_spent_ms=cleaned["time_spent_ms"],
    )
    # The set's open slots, passing over any another transaction has locked. Such a slot is not
    # open any more (a claim is taking it, or its holder is submitting it) though this statement's
    # snapshot may still see it open: waiting for it would deadlock with a submit of that slot,
    # which holds it and waits for the set's row, held here.
    unlocked = Task.objects.select_for_update(skip_locked=True).filter(
        ranking_set=ranking_set, kind=KIND, state=Task.State.OPEN
    )
    open_slots = Task.objects.filter(pk__in=unlocked.order_by().values("pk"))
    # Task.priority mirrors the set's rankings_count: sets with more rankings go first.
    open_slots.update(priority=ranking_set.rankings_count)
    if ranking_set.rankings_count >= ranking_set.rankings_needed:
        # Slots nobody took are no longer needed once the set has its N rankings.
        open_slots.update(state=Task.State.CANCELLED)
    result = {"ranking": ranking.pk}
    if rewrite is not None:
        result["rewrite"] = rewrite.pk
    return result


RANKING = TaskKind(
    kind=KIND,
    eligible=ranking_tasks_eligible,
    claim_sql=RANKING_CLAIM_SQL,
    submit=ranking_submit,
    describe=ranking_task_describe,
)
