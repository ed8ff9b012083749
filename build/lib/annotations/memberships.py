"""Writes to memberships: who belongs to a project in which role. Every change is written to the
audit log, before -> after; a project always keeps a lead."""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotations.audit import audit_record
from annotations.models import Membership, Project


def membership_audit(
    *,
    membership: Membership,
    actor: AbstractBaseUser | None,
    before_role: str | None,
    after_role: str | None,
    reason: str = "",
) -> None:
    """Log a change of membership: added (`before_role` None), removed (`after_role` None) or
    given another role. The services and the admin log members in this one form."""
    if before_role is None:
        action = "member.add"
    elif after_role is None:
        action = "member.remove"
    else:
        action = "member.role"
    audit_record(
        project=membership.project,
        actor=actor,
        action=action,
        target=f"user {membership.user.get_username()}",
        before=None if before_role is None else {"role": before_role},
        after=None if after_role is None else {"role": after_role},
        reason=reason,
    )


def _check_role(role: str) -> None:
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; use one of {', '.join(Membership.Role.values)}."}
        )


def _keeps_a_lead(membership: Membership, *, new_role: str | None) -> None:
    """Refuse to leave the project without a lead (staff could still manage it, but nobody
    would be shown as responsible)."""
    if membership.role != Membership.Role.LEAD or new_role == Membership.Role.LEAD:
        return
    others = Membership.objects.filter(
        project_id=membership.project_id, role=Membership.Role.LEAD
    ).exclude(pk=membership.pk)
    if not others.exists():
        raise ValidationError(
            {"role": f"{membership.user} is the project's only lead; make someone else lead first."}
        )


@transaction.atomic
def membership_add(
    *, project: Project, actor: AbstractBaseUser | None, user: AbstractBaseUser, role: str
) -> Membership:
    """Make `user` a member in `role`; refused if they already are one."""
    _check_role(role)
    if Membership.objects.filter(project=project, user=user).exists():
        raise ValidationError({"user": f"{user} is already a member of {project.name}."})
    try:
        with transaction.atomic():  # a savepoint: a racing twin of this request may add them first
            membership = Membership.objects.create(project=project, user=user, role=role)
    except IntegrityError:
        raise ValidationError({"user": f"{user} is already a member of {project.name}."}) from None
    membership_audit(membership=membership, actor=actor, before_role=None, after_role=role)
    return membership


@transaction.atomic
def membership_change_role(
    *, membership: Membership, actor: AbstractBaseUser | None, role: str
) -> Membership:
    _check_role(role)
    membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    if membership.role == role:
        return membership
    _keeps_a_lead(membership, new_role=role)
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    membership_audit(membership=membership, actor=actor, before_role=before, after_role=role)
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: AbstractBaseUser | None) -> None:
    """Remove a member. What they submitted stays; the tasks they hold are the caller's (the
    labelling app returns them to the pool in the same transaction)."""
    membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    _keeps_a_lead(membership, new_role=None)
    membership_audit(
        membership=membership, actor=actor, before_role=membership.role, after_role=None
    )
    membership.delete()


@transaction.atomic
def membership_set(
    *, project: Project, user: AbstractBaseUser, role: str, actor: AbstractBaseUser | None = None
) -> Membership:
    """Give `user` this role, adding them if needed (for scripts such as the demo seed)."""
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        return membership_add(project=project, actor=actor, user=user, role=role)
    return membership_change_role(membership=membership, actor=actor, role=role)
