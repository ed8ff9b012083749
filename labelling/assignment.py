"""Handing tasks to trainers: claims under row locks, leases, autosave, skip and submit.

Every kind of task (demonstration, ranking, ...) registers a `TaskKind` with what only it knows:
which open tasks a trainer may get and in what order, how to make more when the pool runs dry,
how to store a submission, and how to describe a task to the API. The lifecycle is the same for
all of them and lives here, so the pages and the API share one set of rules.

Claims take `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL: concurrent trainers each lock a
different open task and never receive the same one.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404
from django.utils import timezone

from annotations.access import AccessDenied, can, projects_for_user
from annotations.compiled import CompiledQuery
from annotations.models import Project
from annotations.text import check_storable_json, check_storable_text
from labelling.models import Task, TaskSkip
from labelling.services import RELEASE_FIELDS, task_release

AUTOSAVE_MAX_BYTES = 256 * 1024


class TaskConflict(Exception):
    """The request clashes with the task's state (HTTP 409): not yours, done, or over a limit."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class TaskKind:
    """What one kind of task adds to the shared lifecycle."""

    kind: str
    # Narrow and order the open tasks of a project that `user` may be given. The claim compiles
    # this once per process with stand-in ids, so it may use the user only through `user.pk`
    # and nothing that changes between calls (no timestamps).
    eligible: Callable[[QuerySet[Task], AbstractBaseUser], QuerySet[Task]]
    # Store the submission (raising ValidationError on bad input); returns ids for Task.result.
    submit: Callable[..., dict]
    # What the API and pages show of a task.
    describe: Callable[[Task], dict]
    # Make more open tasks when none is eligible (e.g. a blank demonstration); may return None.
    supply: Callable[[Project, AbstractBaseUser], Task | None] | None = None
    # Called inside the skip transaction, e.g. to file a report about the prompt.
    on_skip: Callable[..., None] | None = None
    # Called inside the claim transaction when a task is handed to a new holder, e.g. to clear
    # what an earlier holder whose lease ran out left behind.
    on_claim: Callable[[Task], None] | None = None


KINDS: dict[str, TaskKind] = {}


def register_task_kind(kind: TaskKind) -> None:
    KINDS[kind.kind] = kind


def task_kind(kind: str) -> TaskKind:
    _load_kinds()
    try:
        return KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(KINDS)) or "none"
        raise ValidationError(
            {"kind": f"Unknown task kind {kind!r}; use one of: {known}."}
        ) from None


def _load_kinds() -> None:
    # The modules register their kinds on import; importing here keeps the registry complete
    # wherever the lifecycle is used (web, API, Celery) without signals or import-order luck.
    import importlib

    for module in ("labelling.demonstrations", "labelling.rankings"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def lease_deadline(project: Project) -> timezone.datetime:
    return timezone.now() + timedelta(seconds=project.task_lease_seconds)


# A trainer holds a handful of tasks at most: one read answers both "do I hold one of this kind?"
# and "am I at my limit?".
_HELD = CompiledQuery(
    lambda project_id, user_id: Task.objects.filter(
        project_id=project_id, assignee_id=user_id, state=Task.State.ASSIGNED
    ).order_by("assigned_at", "id"),
    project_id=int,
    user_id=int,
)


def not_skipped_by(queryset: QuerySet[Task], user: AbstractBaseUser) -> QuerySet[Task]:
    return queryset.exclude(Exists(TaskSkip.objects.filter(task=OuterRef("pk"), user=user)))


def eligible_tasks(handler: TaskKind, project: Project, user: AbstractBaseUser) -> QuerySet[Task]:
    """The open tasks of the kind `user` may get, best first, locked with SKIP LOCKED."""
    candidates = Task.objects.select_for_update(skip_locked=True, of=("self",)).filter(
        project=project, kind=handler.kind, state=Task.State.OPEN
    )
    return handler.eligible(not_skipped_by(candidates, user), user)


# The claim walks open tasks in order and passes over those the trainer may not have, each
# checked by NOT EXISTS. Expecting to stop at the first task, PostgreSQL would otherwise read
# the trainer's whole history once and compare every task walked against all of it (a
# Materialize under the anti-join): a walk past 200 sets by a trainer with 600 past tasks took
# 10 ms that way and 2 ms as one index probe per task walked, the plan it picks without it.
_CLAIM_PLANNER = {"enable_material": "off"}


# The claim query of each kind, compiled on its first claim: the hottest request of all. This is
# why `TaskKind.eligible` may use the user only through its id.
@functools.cache
def _claim_query(handler: TaskKind) -> CompiledQuery:
    return CompiledQuery(
        lambda project_id, user_id: eligible_tasks(
            handler, Project(pk=project_id), get_user_model()(pk=user_id)
        )[:1],
        postgresql_settings=_CLAIM_PLANNER,
        project_id=int,
        user_id=int,
    )


def _one_claim_at_a_time(project: Project, user: AbstractBaseUser) -> tuple[str, list]:
    # Two claims of one trainer at once (a double click, two tabs) would each lock a different
    # slot, and neither would see the other's yet-uncommitted one: they could be handed two
    # slots of one set, or go over the open-task limit. Taken first in the claim's own
    # transaction, this lock makes the second claim wait for the first to commit and then see it.
    return "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [
        f"parley:claim:{project.pk}:{user.pk}"
    ]


@transaction.atomic
def task_claim_next(*, project: Project, user: AbstractBaseUser, kind: str) -> Task | None:
    """The task of `kind` the user holds, or the next one for them, leased; None if none is left.

    The next task is picked and assigned by one statement: its row lock is taken with SKIP
    LOCKED and the row updated at once.
    """
    if not can(user, project, "annotate"):
        raise AccessDenied(project, "annotate")
    handler = task_kind(kind)
    # The trainer's claim lock comes first, so that a second claim at once (a double click, two
    # tabs) reads what the first holds only after it committed: it resumes the same task, or
    # meets the open-task limit, rather than taking another slot.
    held = _HELD.all(
        postgresql_preamble=_one_claim_at_a_time(project, user),
        project_id=project.pk,
        user_id=user.pk,
    )
    current = next((task for task in held if task.kind == kind), None)
    if current is not None:
        current.project = project
        current.lease_expires_at = lease_deadline(project)
        current.save(update_fields=["lease_expires_at"])
        return current
    if len(held) >= project.max_open_tasks:
        raise TaskConflict(
            f"You already hold {project.max_open_tasks} open tasks in this project; "
            "finish or skip one first.",
            code="task_limit",
        )
    assignment = {
        "state": Task.State.ASSIGNED,
        "assignee_id": user.pk,
        "assigned_at": timezone.now(),
        "lease_expires_at": lease_deadline(project),
    }
    task = _claim_query(handler).update_first(assignment, project_id=project.pk, user_id=user.pk)
    if task is None and handler.supply is not None:
        task = handler.supply(project, user)
        if task is not None:
            for name, value in assignment.items():
                setattr(task, name, value)
            task.save(update_fields=list(assignment))
    if task is None:
        return None
    task.project = project
    if handler.on_claim is not None:
        handler.on_claim(task)
    return task


def _tasks_with_project(lock: bool) -> QuerySet[Task]:
    queryset = Task.objects.select_related("project")
    return queryset.select_for_update(of=("self",)) if lock else queryset


# Every request about one task (autosave, submit, skip, the task's page) starts here.
_MEMBER_TASK = {
    lock: CompiledQuery(
        lambda task_id, user_id, lock=lock: (
            _tasks_with_project(lock)
            .filter(pk=task_id, project__is_active=True, project__memberships__user_id=user_id)
            .order_by()[:1]
        ),
        task_id=int,
        user_id=int,
    )
    for lock in (False, True)
}


def task_for_member(*, task_id: int, user: AbstractBaseUser, lock: bool = False) -> Task:
    """The task if it belongs to one of the user's projects (Http404 otherwise)."""
    if user.is_authenticated and not user.is_superuser:
        task = _MEMBER_TASK[lock].first(task_id=task_id, user_id=user.pk)
    else:
        projects = projects_for_user(user)
        task = _tasks_with_project(lock).filter(pk=task_id, project__in=projects).first()
    if task is None:
        raise Http404("No such task.")
    return task


def _require_holder(task: Task, user: AbstractBaseUser) -> None:
    if task.state != Task.State.ASSIGNED or task.assignee_id != user.pk:
        if task.state == Task.State.DONE:
            raise TaskConflict("This task has already been submitted.", code="task_done")
        raise TaskConflict(
            "You do not hold this task (it was never yours, or its lease ran out and it went "
            "back to the pool).",
            code="task_not_held",
        )


@transaction.atomic
def task_renew(*, task_id: int, user: AbstractBaseUser) -> Task:
    task = task_for_member(task_id=task_id, user=user, lock=True)
    _require_holder(task, user)
    task.lease_expires_at = lease_deadline(task.project)
    task.save(update_fields=["lease_expires_at"])
    return task


def _check_autosave(data) -> None:
    if not isinstance(data, dict):
        raise ValidationError({"data": "Autosaved data must be an object."})
    check_storable_json(data, "data")
    size = len(json.dumps(data))
    if size > AUTOSAVE_MAX_BYTES:
        raise ValidationError(
            {"data": f"Autosaved data is {size} bytes; the limit is {AUTOSAVE_MAX_BYTES}."}
        )


_AUTOSAVE_FIELDS = [
    "autosave",
    "autosaved_at",
    "lease_expires_at",
    "autosave_page",
    "autosave_seq",
    "autosave_revision",
]


def _store_autosave(task: Task, data: dict, *, page: int, seq: int) -> None:
    task.autosave = data
    task.autosaved_at = timezone.now()
    task.lease_expires_at = lease_deadline(task.project)
    task.autosave_page = page
    task.autosave_seq = seq
    task.autosave_revision += 1
    task.save(update_fields=_AUTOSAVE_FIELDS)


@transaction.atomic
def task_autosave(*, task_id: int, user: AbstractBaseUser, data: dict) -> Task:
    """Keep the trainer's work in progress on the server; it also renews the lease.

    This is the API's save: it always stores. Pages save through `task_page_autosave`.
    """
    _check_autosave(data)
    task = task_for_member(task_id=task_id, user=user, lock=True)
    _require_holder(task, user)
    _store_autosave(task, data, page=0, seq=0)
    return task


@transaction.atomic
def task_open_page(*, task_id: int, user: AbstractBaseUser) -> Task:
    """A page of the task is loading: give it the next page number (`task.pages_opened`).

    Opening the page is activity, so it renews the lease too.
    """
    task = task_for_member(task_id=task_id, user=user, lock=True)
    _require_holder(task, user)
    task.pages_opened += 1
    task.lease_expires_at = lease_deadline(task.project)
    task.save(update_fields=["pages_opened", "lease_expires_at"])
    return task


@dataclass(frozen=True)
class PageSave:
    """What became of a page's autosave.

    `stored` says whether this save is now the task's autosave. When it is not, either it was
    the page's own older save arriving late (`task.autosave_page == page`: nothing to tell the
    trainer), or a newer page of the same task has written since (`task.autosave` is that
    newer work, to offer to the trainer). `page` is the page number the page goes on with: a
    page that takes over gets a new one, newer than every other page open.
    """

    task: Task
    stored: bool
    page: int


def parse_page_position(data: dict) -> tuple[int | None, int | None, bool]:
    """The (page, seq, take_over) a page sends with its autosave, checked.

    A client that sends neither (a script, an older page) saves as the API does: always stored.
    """
    if data.get("page") is None and data.get("seq") is None:
        return None, None, False
    errors = {}
    values = []
    for key in ("page", "seq"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**53:
            errors[key] = f"{key} must be a positive whole number."
        values.append(value)
    if errors:
        raise ValidationError(errors)
    return values[0], values[1], data.get("take_over") is True


@transaction.atomic
def task_page_autosave(
    *,
    task_id: int,
    user: AbstractBaseUser,
    data: dict,
    page: int | None,
    seq: int | None,
    take_over: bool = False,
) -> PageSave:
    """Store a page's autosave unless it would wind back newer work; renews the lease.

    Each page load has a number (`task_open_page`) and numbers its saves 1, 2, ... A save is
    stored when it comes from the page that wrote last with a higher sequence number, or from a
    newer page (a reload carrying on). It is not stored when it is an older save of the page
    that wrote last (saves overtaking each other), or when it comes from an older page after a
    newer one wrote: a save still in flight when the trainer reloaded, or a second window that
    has fallen behind, which is told so. `take_over` (the trainer chose this window's version)
    stores it anyway and makes the page the newest.
    """
    _check_autosave(data)
    task = task_for_member(task_id=task_id, user=user, lock=True)
    _require_holder(task, user)
    if page is None or seq is None:  # not from a page: stored, as the API's saves are
        _store_autosave(task, data, page=0, seq=0)
        return PageSave(task=task, stored=True, page=0)
    if not take_over and not 0 < page <= task.pages_opened:
        raise ValidationError({"page": "This page is not one of this task's; reload it."})
    if take_over:
        task.pages_opened += 1
        task.save(update_fields=["pages_opened"])
        page = task.pages_opened
    elif page < task.autosave_page or (page == task.autosave_page and seq <= task.autosave_seq):
        task.lease_expires_at = lease_deadline(task.project)
        task.save(update_fields=["lease_expires_at"])
        return PageSave(task=task, stored=False, page=page)
    _store_autosave(task, data, page=page, seq=seq)
    return PageSave(task=task, stored=True, page=page)


@transaction.atomic
def task_submit(*, task_id: int, user: AbstractBaseUser, data: dict) -> Task:
    """Store the submission once. Submitting a task one already finished returns it unchanged."""
    task = task_for_member(task_id=task_id, user=user, lock=True)
    if task.state == Task.State.DONE and task.assignee_id == user.pk:
        return task
    _require_holder(task, user)
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": "The submission must be an object."})
    check_storable_json(data, "")
    result = task_kind(task.kind).submit(task=task, user=user, data=data)
    task.state = Task.State.DONE
    task.done_at = timezone.now()
    task.lease_expires_at = None
    task.result = result or {}
    task.save(update_fields=["state", "done_at", "lease_expires_at", "result"])
    return task


@transaction.atomic
def task_skip(*, task_id: int, user: AbstractBaseUser, reason: str = "", **extra) -> Task:
    """Give the task back to the pool; the user is not offered it again."""
    task = task_for_member(task_id=task_id, user=user, lock=True)
    _require_holder(task, user)
    reason = check_storable_text((reason or "").strip()[:500], "reason")
    handler = task_kind(task.kind)
    if handler.on_skip is not None:
        handler.on_skip(task=task, user=user, reason=reason, **extra)
    elif extra:
        raise ValidationError({key: "Not accepted for this kind of task." for key in extra})
    TaskSkip.objects.get_or_create(task=task, user=user, defaults={"reason": reason})
    task_release(task)
    task.skip_reason = reason
    task.save(update_fields=[*RELEASE_FIELDS, "skip_reason"])
    return task


def task_describe(task: Task) -> dict:
    return {
        "id": task.pk,
        "kind": task.kind,
        "state": task.state,
        "project": task.project.slug,
        "lease_expires_at": task.lease_expires_at,
        "autosave": task.autosave,
        "result": task.result,
        **task_kind(task.kind).describe(task),
    }
