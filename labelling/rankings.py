"""The "ranking" task kind: which sets a trainer may rank, what they see, and storing a ranking.

The shared lifecycle (claims under row locks, leases, skip, idempotent submit) lives in
`labelling.assignment`; this module adds only what is particular to ranking a set of replies.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet

from annotations.compiled import CompiledQuery
from annotations.models import Message, Project, Ranking, RankingCandidate, RankingSet
from annotations.rankings import ranking_set_finalize
from annotations.selectors import thread_to
from annotations.services import message_add
from labelling.assignment import TaskConflict, TaskKind, register_task_kind
from labelling.models import Task, TaskSkip

KIND = Task.Kind.RANKING
SUBMIT_FIELDS = ("order", "flags", "all_bad", "rewrite", "time_spent_ms")
# Time on task is stored in a PositiveIntegerField (a signed 32-bit column on PostgreSQL).
MAX_TIME_SPENT_MS = 2**31 - 1


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


# A set's candidates with their messages, and through them the set and its context: one query.
_CANDIDATES = CompiledQuery(
    lambda ranking_set_id: (
        RankingCandidate.objects.filter(ranking_set_id=ranking_set_id)
        .select_related("message", "ranking_set__context")
        .order_by()
    ),
    ranking_set_id=int,
)


def _candidates_of(task: Task) -> list[RankingCandidate]:
    # Submitting reads them to check the order and then describes the task: read them once.
    if not hasattr(task, "_candidates"):
        task._candidates = _CANDIDATES.all(ranking_set_id=task.ranking_set_id)
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
        "candidates": [{"id": m.pk, "text": m.text} for m in view.candidates],
        "labels": view.labels,
    }


# ---------------------------------------------------------------------------- validation


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ids(values) -> str:
    return ", ".join(str(v) for v in sorted(values))


def clean_order(order: object, candidate_ids: set[int]) -> list[list[int]]:
    """Groups of candidate ids, best first, covering every candidate exactly once."""
    shape = (
        "The order must be a list of groups of candidate ids, best first, e.g. [[12], [14, 15]] "
        "(ids in one group are tied)."
    )
    if not isinstance(order, list) or not order:
        raise ValidationError(shape)
    groups: list[list[int]] = []
    for group in order:
        if not isinstance(group, list) or not group or not all(_is_int(i) for i in group):
            raise ValidationError(shape)
        groups.append(sorted(group))
    seen: list[int] = [i for group in groups for i in group]
    problems = []
    if missing := candidate_ids - set(seen):
        problems.append(f"missing {_ids(missing)}")
    if unknown := set(seen) - candidate_ids:
        problems.append(f"not candidates of this set: {_ids(unknown)}")
    if repeated := {i for i in seen if seen.count(i) > 1}:
        problems.append(f"repeated {_ids(repeated)}")
    if problems:
        raise ValidationError(
            f"The order must rank each of the set's candidates ({_ids(candidate_ids)}) exactly "
            f"once: {'; '.join(problems)}."
        )
    return groups


def clean_flags(flags: object, candidate_ids: set[int], allowed: list[str]) -> dict[str, list[str]]:
    """{candidate id: [flag names]} with the project's flag labels only; empty lists dropped."""
    if flags is None:
        return {}
    if not isinstance(flags, dict):
        raise ValidationError(
            'Flags must be an object of candidate id to label names, e.g. {"12": ["harmful"]}.'
        )
    cleaned: dict[str, list[str]] = {}
    for key, names in flags.items():
        try:
            candidate_id = int(key)
        except (TypeError, ValueError):
            candidate_id = None
        if candidate_id not in candidate_ids:
            raise ValidationError(f"Flags name {key!r}, which is not a candidate of this set.")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValidationError(f"Flags of candidate {key} must be a list of label names.")
        if unknown := sorted(set(names) - set(allowed)):
            raise ValidationError(
                f"Unknown flag {', '.join(repr(n) for n in unknown)} on candidate {key}; "
                f"this project's flags are: {', '.join(allowed) or 'none'}."
            )
        if names:
            cleaned[str(candidate_id)] = [n for n in allowed if n in names]
    return cleaned


def clean_rewrite(rewrite: object) -> str | None:
    if rewrite is None:
        return None
    if not isinstance(rewrite, dict) or not isinstance(rewrite.get("text"), str):
        raise ValidationError('A rewrite is null or {"text": "a better reply"}.')
    if extra := sorted(set(rewrite) - {"text"}):
        raise ValidationError(f"A rewrite has only a text; unexpected: {', '.join(extra)}.")
    return rewrite["text"]


def clean_time_spent(value: object) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_TIME_SPENT_MS:
        raise ValidationError(
            "Time spent is a whole number of milliseconds, 0 or more (or null when unknown)."
        )
    return value


# ---------------------------------------------------------------------------- submit


# The set locked for counting up, with its context and whether this trainer already ranked it.
_SET_TO_RANK = CompiledQuery(
    lambda ranking_set_id, user_id: (
        RankingSet.objects.select_for_update(of=("self",))
        .select_related("context")
        .annotate(
            ranked_by_user=Exists(
                Ranking.objects.filter(ranking_set=OuterRef("pk"), annotator_id=user_id)
            )
        )
        .filter(pk=ranking_set_id)
        .order_by()[:1]
    ),
    ranking_set_id=int,
    user_id=int,
)


def ranking_submit(*, task: Task, user: AbstractBaseUser, data: dict) -> dict:
    """Store the trainer's ranking of the task's set; finalize the set at its N-th ranking.

    Runs inside `task_submit`'s transaction with the task row locked. The set's row is locked
    too, so concurrent rankings of one set count up one at a time and exactly one of them sees
    the count reach N and finalizes it.
    """
    ranking_set = _SET_TO_RANK.first(ranking_set_id=task.ranking_set_id, user_id=user.pk)
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

    candidate_ids = {entry.message_id for entry in _candidates_of(task)}
    allowed_flags = [label["name"] for label in flag_labels(ranking_set.project)]
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, object] = {}
    for key in sorted(set(data) - set(SUBMIT_FIELDS)):
        errors[key] = [f"Unexpected field; a ranking has: {', '.join(SUBMIT_FIELDS)}."]
    checks = {
        "order": lambda v: clean_order(v, candidate_ids),
        "flags": lambda v: clean_flags(v, candidate_ids, allowed_flags),
        "all_bad": _clean_all_bad,
        "rewrite": clean_rewrite,
        "time_spent_ms": clean_time_spent,
    }
    for field, check in checks.items():
        try:
            cleaned[field] = check(data.get(field))
        except ValidationError as exc:
            errors[field] = exc.messages
    if errors:
        raise ValidationError(errors)

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

    ranking = Ranking.objects.create(
        ranking_set=ranking_set,
        annotator=user,
        order=cleaned["order"],
        flags=cleaned["flags"],
        all_bad=cleaned["all_bad"],
        rewrite=rewrite,
        time_spent_ms=cleaned["time_spent_ms"],
    )
    # The set's row is locked, so counting up in Python cannot lose a concurrent ranking.
    ranking_set.rankings_count += 1
    ranking_set.save(update_fields=["rankings_count"])
    Task.objects.filter(ranking_set=ranking_set, kind=KIND, state=Task.State.OPEN).update(
        priority=ranking_set.rankings_count
    )
    if ranking_set.rankings_count >= ranking_set.rankings_needed:
        ranking_set_finalize(ranking_set=ranking_set)
        # Slots nobody took are no longer needed once the set has its N rankings.
        Task.objects.filter(ranking_set=ranking_set, kind=KIND, state=Task.State.OPEN).update(
            state=Task.State.CANCELLED
        )
    result = {"ranking": ranking.pk}
    if rewrite is not None:
        result["rewrite"] = rewrite.pk
    return result


def _clean_all_bad(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError("all_bad is true or false.")
    return value


register_task_kind(
    TaskKind(
        kind=KIND,
        eligible=ranking_tasks_eligible,
        submit=ranking_submit,
        describe=ranking_task_describe,
    )
)
