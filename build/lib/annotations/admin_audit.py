"""The audit log of changes staff make in the admin to projects and memberships, so the project's
change log holds them beside those made on the console (marked "in the admin")."""

import json
from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model

from annotations.memberships import membership_audit
from annotations.models import Membership, Project
from annotations.projects import project_audit

IN_THE_ADMIN = "in the admin"


def _plain(field: forms.Field | None, value: Any) -> Any:
    """A form value as the log stores it: a model by its name, the rest as JSON."""
    if isinstance(field, forms.ModelMultipleChoiceField):
        return sorted(str(item) for item in value or [])
    if isinstance(field, forms.ModelChoiceField):
        if value is None or isinstance(value, Model):
            return str(value) if value is not None else None
        found = field.queryset.filter(pk=value).first()
        return str(found) if found is not None else value
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def project_saved_in_admin(
    *, project: Project, actor: AbstractBaseUser, form: forms.ModelForm, created: bool
) -> None:
    if created:
        project_audit(project=project, actor=actor, reason=IN_THE_ADMIN)
        return
    fields = list(form.changed_data)
    # The form counts a JSON field as changed whenever it was submitted; compare the values.
    before = {f: _plain(form.fields.get(f), form.initial.get(f)) for f in fields}
    after = {f: _plain(form.fields.get(f), form.cleaned_data.get(f)) for f in fields}
    changed = {f: (before[f], after[f]) for f in fields if before[f] != after[f]}
    if changed:
        project_audit(project=project, actor=actor, changed=changed, reason=IN_THE_ADMIN)


def membership_saved_in_admin(
    *, membership: Membership, actor: AbstractBaseUser, before_role: str | None
) -> None:
    """Log a membership the admin added (`before_role` None) or whose role it changed."""
    if before_role == membership.role:
        return
    membership_audit(
        membership=membership,
        actor=actor,
        before_role=before_role,
        after_role=membership.role,
        reason=IN_THE_ADMIN,
    )


def membership_deleted_in_admin(*, membership: Membership, actor: AbstractBaseUser) -> None:
    membership_audit(
        membership=membership,
        actor=actor,
        before_role=membership.role,
        after_role=None,
        reason=IN_THE_ADMIN,
    )
