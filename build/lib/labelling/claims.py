"""Handing tasks to trainers: claiming the next one, submitting it, skipping it, describing it.

The lifecycle is the same for every kind of task (demonstration, ranking, ...); what only a kind
knows (which open tasks a trainer may get and in what order, storing a submission, describing a
task) comes from its `TaskKind`, looked up in `labelling.kinds`. Holding a task and its lease is
`labelling.leases`; work in progress is `labelling.autosave`.

On PostgreSQL a claim is one statement, written out below: concurrent trainers each lock a
different open task with `FOR UPDATE SKIP LOCKED` and never receive the same one. SQLite has no
row locks (nor advisory locks); there the claim runs through the ORM, and SQLite's IMMEDIATE
transactions make claims take turns.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from annotations.access import AccessDenied, can
from annotations.models import Project
from annotations.selectors import exclusion_standing
from annotations.text import check_storable_json, check_storable_text
from labelling.kinds import task_kind
from labelling.leases import TaskConflict, lease_deadline, require_holder, task_for_member
from labelling.models import Task, TaskSkip
from labelling.services import RELEASE_FIELDS, task_release
from labelling.taskkind import TaskKind

# ---------------------------------------------------------------------------- the claim

# The claim on PostgreSQL, sent in one round trip: the hottest request of all.
#
# 1. The trainer's advisory lock, in a statement of its own. Two claims of one trainer at once
#    (a double click, two tabs) would otherwise each take a different slot, neither seeing the
#    other's yet-uncommitted one: they could be handed two slots of one set, or go over the
#    open-task limit. The second claim waits here until the first commits; the claim statement,
#    which takes its snapshot only when it starts, then sees what the first one took. (Inside
#    the claim statement the lock would come after its snapshot, too late.)
# 2. No Materialize, for this transaction. The claim walks open tasks in order and passes over
#    those the trainer may not have, each checked by NOT EXISTS. Expecting to stop at the first
#    task, PostgreSQL would otherwise read the trainer's whole history once and compare every
#    task walked against all of it: a walk past 200 sets by a trainer with 600 past tasks took
#    10 ms that way and 2 ms as one index probe per task walked, the plan it picks without it.
# 3. The claim statement. `held`: what the trainer holds in the project (a handful of tasks at
#    most). `resumed`: holding a task of this kind, they get it back with its lease renewed.
#    `picked`: otherwise, below the project's open-task limit, the first open task of the kind
#    they may have, in the kind's order, locked with SKIP LOCKED so that concurrent claims pass
#    over each other's rows instead of waiting on them. `claimed`: that task, assigned. The
#    answer is the task, or no row at all (at the open-task limit, or none left).
#
# {kind_where} and {kind_order_by} are the kind's `ClaimSql`, fixed text written in its module
# with the same rule as its `eligible` queryset; every value travels as a parameter.
_CLAIM_SQL = """
SELECT pg_advisory_xact_lock(hashtextextended(%(lock_key)s, 0));

SET LOCAL enable_material = off;

WITH held AS (
    SELECT id, kind, assigned_at FROM labelling_task
    WHERE project_id = %(project_id)s AND assignee_id = %(user_id)s AND state = 'assigned'
),
resumed AS (
    UPDATE labelling_task SET lease_expires_at = %(lease_expires_at)s
    WHERE labelling_task.id = (
        SELECT held.id FROM held WHERE held.kind = %(kind)s ORDER BY held.assigned_at, held.id
        LIMIT 1
    )
    RETURNING labelling_task.*
),
picked AS (
    SELECT task.id FROM labelling_task task
    WHERE task.project_id = %(project_id)s AND task.kind = %(kind)s AND task.state = 'open'
        AND NOT EXISTS (SELECT FROM held WHERE held.kind = %(kind)s)
        AND (SELECT count(*) FROM held) < %(max_open_tasks)s
        AND NOT EXISTS (
            SELECT FROM labelling_taskskip passed
            WHERE passed.task_id = task.id AND passed.user_id = %(user_id)s
        )
        AND {kind_where}
    ORDER BY {kind_order_by}
    LIMIT 1
    FOR UPDATE OF task SKIP LOCKED
),
claimed AS (
    UPDATE labelling_task
    SET state = 'assigned', assignee_id = %(user_id)s, assigned_at = %(assigned_at)s,
        lease_expires_at = %(lease_expires_at)s
    WHERE labelling_task.id = (SELECT picked.id FROM picked)
    RETURNING labelling_task.*
)
SELECT resumed.*, false AS newly_claimed FROM resumed
UNION ALL
SELECT claimed.*, true AS newly_claimed FROM claimed
"""


def _claim_in_one_statement(
    handler: TaskKind,
    project: Project,
    user: AbstractBaseUser,
    *,
    assigned_at: datetime,
    lease_expires_at: datetime,
) -> tuple[Task | None, bool]:
    """PostgreSQL: (the task handed back or claimed, whether it is newly claimed)."""
    sql = _CLAIM_SQL.format(
        kind_where=handler.claim_sql.where, kind_order_by=handler.claim_sql.order_by
    )
    params = {
        **handler.claim_sql.params,
        "lock_key": f"parley:claim:{project.pk}:{user.pk}",
        "project_id": project.pk,
        "user_id": user.pk,
        "kind": handler.kind,
        "max_open_tasks": project.max_open_tasks,
        "assigned_at": assigned_at,
        "lease_expires_at": lease_expires_at,
    }
    rows = list(Task.objects.raw(sql, params))
    if not rows:
        # No row: at the open-task limit, or no eligible task left. Still under the trainer's
        # lock, so what they hold is what the statement saw.
        held = Task.objects.filter(project=project, assignee=user, state=Task.State.ASSIGNED)
        if held.count() >= project.max_open_tasks:
            raise _over_task_limit(project)
        return None, False
    task = rows[0]
    return task, vars(task).pop("newly_claimed")


def not_skipped_by(queryset: QuerySet[Task], user: AbstractBaseUser) -> QuerySet[Task]:
    return queryset.exclude(Exists(TaskSkip.objects.filter(task=OuterRef("pk"), user=user)))


def eligible_tasks(handler: TaskKind, project: Project, user: AbstractBaseUser) -> QuerySet[Task]:
    """The open tasks of the kind `user` may get, best first, locked with SKIP LOCKED.

    The claim's rule through the ORM; on PostgreSQL the claim statement says the same in SQL.
    """
    candidates = Task.objects.select_for_update(skip_locked=True, of=("self",)).filter(
        project=project, kind=handler.kind, state=Task.State.OPEN
    )
    return handler.eligible(not_skipped_by(candidates, user), user)


def _claim_through_the_orm(
    handler: TaskKind,
    project: Project,
    user: AbstractBaseUser,
    *,
    assigned_at: datetime,
    lease_expires_at: datetime,
) -> tuple[Task | None, bool]:
    """Other databases (SQLite): the same steps as the claim statement, one query each."""
    held = list(
        Task.objects.filter(project=project, assignee=user, state=Task.State.ASSIGNED).order_by(
            "assigned_at", "id"
        )
    )
    current = next((task for task in held if task.kind == handler.kind), None)
    if current is not None:
        current.lease_expires_at = lease_expires_at
        current.save(update_fields=["lease_expires_at"])
        return current, False
    if len(held) >= project.max_open_tasks:
        raise _over_task_limit(project)
    task = eligible_tasks(handler, project, user).first()
    if task is not None:
        _assign(task, user, assigned_at=assigned_at, lease_expires_at=lease_expires_at)
    return task, task is not None


def _over_task_limit(project: Project) -> TaskConflict:
    return TaskConflict(
        f"You already hold {project.max_open_tasks} open tasks in this project; "
        "finish or skip one first.",
        code="task_limit",
    )


def _assign(
    task: Task, user: AbstractBaseUser, *, assigned_at: datetime, lease_expires_at: datetime
) -> None:
    task.state = Task.State.ASSIGNED
    task.assignee_id = user.pk
    task.assigned_at = assigned_at
    task.lease_expires_at = lease_expires_at
    task.save(update_fields=["state", "assignee_id", "assigned_at", "lease_expires_at"])


@transaction.atomic
def task_claim_next(*, project: Project, user: AbstractBaseUser, kind: str) -> Task | None:
    """The task of `kind` the user holds, or the next one for them, leased; None if none is left.

    Raises TaskConflict when the user already holds the project's limit of open tasks.
    """
    if not can(user, project, "annotate"):
        raise AccessDenied(project, "annotate")
    handler = task_kind(kind)
    if kind == Task.Kind.RANKING and exclusion_standing(
        project_id=project.pk, annotator_id=user.pk
    ):
        # A lead excluded this trainer's rankings: one would not count, and would take a slot
        # that a counting ranking needs.
        return None
    claim = _claim_in_one_statement if connection.vendor == "postgresql" else _claim_through_the_orm
    times = {"assigned_at": timezone.now(), "lease_expires_at": lease_deadline(project)}
    task, newly_claimed = claim(handler, project, user, **times)
    if task is None and handler.supply is not None:
        task = handler.supply(project, user)
        if task is not None:
            _assign(task, user, **times)
            newly_claimed = True
    if task is None:
        return None
    task.project = project
    if newly_claimed and handler.on_claim is not None:
        handler.on_claim(task)
    return task


# ---------------------------------------------------------------------------- submit and skip


@transaction.atomic
def task_submit(*, task_id: int, user: AbstractBaseUser, data: dict) -> Task:
    """Store the submission once. Submitting a task one already finished returns it unchanged."""
    task = task_for_member(task_id=task_id, user=user, lock=True)
    if task.state == Task.State.DONE and task.assignee_id == user.pk:
        return task
    require_holder(task, user)
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
    require_holder(task, user)
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
    """What the API and pages show of a task: the common fields and the kind's own."""
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
