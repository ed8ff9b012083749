"""Writes for project set-up, membership, the task lifecycle and members' API tokens."""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotations.models import Membership, Project
from labelling.models import Task


@transaction.atomic
def project_create(
    *, slug: str, name: str, guidelines: str = "", description: str = "", **settings_fields
) -> Project:
    project = Project(
        slug=slug, name=name, guidelines=guidelines, description=description, **settings_fields
    )
    project.full_clean()
    project.save()
    return project


@transaction.atomic
def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Give `user` this role in `project` (one role per user and project)."""
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; use one of {Membership.Role.values}."}
        )
    membership, _ = Membership.objects.update_or_create(
        user=user, project=project, defaults={"role": role}
    )
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user: AbstractBaseUser) -> None:
    """Remove a member; the tasks they hold go back to the pool."""
    Membership.objects.filter(project=project, user=user).delete()
    Task.objects.filter(project=project, assignee=user, state=Task.State.ASSIGNED).update(
        state=Task.State.OPEN, assignee=None, lease_expires_at=None, assigned_at=None
    )


RELEASE_FIELDS = [
    "state",
    "assignee",
    "lease_expires_at",
    "assigned_at",
    "autosave",
    "autosaved_at",
]


def task_release(task: Task) -> None:
    """Put a held task back in the pool (unsaved). Autosaved work stays with the task only where
    the project hands it on; otherwise the next trainer starts clean. Saves RELEASE_FIELDS."""
    task.state = Task.State.OPEN
    task.assignee = None
    task.lease_expires_at = None
    task.assigned_at = None
    if not task.project.keep_autosave_on_expiry:
        task.autosave = {}
        task.autosaved_at = None


@transaction.atomic
def task_leases_expire(*, now: timezone.datetime | None = None) -> int:
    """Return tasks whose lease ran out to the pool; returns how many."""
    now = now or timezone.now()
    expired = list(
        Task.objects.select_for_update(skip_locked=True)
        .filter(state=Task.State.ASSIGNED, lease_expires_at__lt=now)
        .select_related("project")
    )
    for task in expired:
        task_release(task)
    Task.objects.bulk_update(expired, RELEASE_FIELDS)
    return len(expired)


@transaction.atomic
def api_token_regenerate(*, user: AbstractBaseUser) -> Token:
    """Issue the user a new API token; the old one stops working at once."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)
