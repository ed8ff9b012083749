"""Writes for the task lifecycle, removing a member (with the tasks they hold) and members'
API tokens. Projects and memberships themselves are written by annotations.projects and
annotations.memberships."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotations.memberships import membership_remove
from annotations.models import Membership
from labelling.models import Task


@transaction.atomic
def member_remove(*, membership: Membership, actor: AbstractBaseUser | None) -> int:
    """Remove a member (annotations logs it) and return the tasks they hold to the pool, as an
    expired lease would; what they submitted stays. Returns how many tasks went back."""
    held = list(
        Task.objects.select_for_update(of=("self",))
        .filter(
            project_id=membership.project_id,
            assignee_id=membership.user_id,
            state=Task.State.ASSIGNED,
        )
        .select_related("project")
    )
    membership_remove(membership=membership, actor=actor)
    for task in held:
        task_release(task)
    Task.objects.bulk_update(held, RELEASE_FIELDS)
    return len(held)


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
