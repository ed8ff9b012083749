"""A trainer's hold on a task: finding a member's task, checking who holds it, renewing its lease.

Every request about one task (autosave, submit, skip, the task's page) starts with
`task_for_member` and, when it changes the task, `require_holder`; a read of the task by the API
starts with `task_for_reader`, which shows only one's own tasks.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from annotations.access import projects_for_user
from annotations.models import Project
from labelling.models import Task


class TaskConflict(Exception):
    """The request clashes with the task's state (HTTP 409): not yours, done, or over a limit."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def lease_deadline(project: Project) -> timezone.datetime:
    return timezone.now() + timedelta(seconds=project.task_lease_seconds)


def _tasks_with_project(lock: bool) -> QuerySet[Task]:
    queryset = Task.objects.select_related("project")
    return queryset.select_for_update(of=("self",)) if lock else queryset


def task_for_member(*, task_id: int, user: AbstractBaseUser, lock: bool = False) -> Task:
    """The task if it belongs to one of the user's projects (Http404 otherwise).

    With `lock` the task's row is locked until the end of the caller's transaction.
    """
    tasks = _tasks_with_project(lock).filter(pk=task_id)
    if user.is_authenticated and not user.is_superuser:
        # One join on the membership rather than a subquery of every project of the user.
        task = (
            tasks.filter(project__is_active=True, project__memberships__user_id=user.pk)
            .order_by()
            .first()
        )
    else:
        task = tasks.filter(project__in=projects_for_user(user)).order_by().first()
    if task is None:
        raise Http404("No such task.")
    return task


def task_for_reader(*, task_id: int, user: AbstractBaseUser) -> Task:
    """The task if `user` holds it now or submitted it (Http404 otherwise, as for no such task).

    What a read of one task shows (its autosave, the submitted result, the set it ranks) is the
    work of whoever holds or did it: another trainer must never read it, least of all an order
    of a set they may still rank. Leads and engineers read submitted work in the data explorer.
    """
    task = task_for_member(task_id=task_id, user=user)
    if task.assignee_id != user.pk or task.state not in (Task.State.ASSIGNED, Task.State.DONE):
        raise Http404("No such task.")
    return task


def require_holder(task: Task, user: AbstractBaseUser) -> None:
    """Raise TaskConflict unless `user` holds the task now."""
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
    require_holder(task, user)
    task.lease_expires_at = lease_deadline(task.project)
    task.save(update_fields=["lease_expires_at"])
    return task
