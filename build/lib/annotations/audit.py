"""The audit log: every change a lead or staff member makes to a project, its people or its data.

Services that change something a lead would later ask "who did this, and why?" about call
`audit_record` inside their own transaction, so the entry exists exactly when the change does.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from annotations.models import AuditEntry, Project
from annotations.text import check_storable_text

REASON_MAX_CHARS = 2000


def audit_reason(reason: str, *, required: bool = True) -> str:
    """The reason a lead gave for a change, checked for the log (stripped, storable, not too
    long); with `required`, an empty one is refused on the `reason` field."""
    reason = check_storable_text((reason or "").strip(), "reason")
    if required and not reason:
        raise ValidationError({"reason": "Say why (the reason is kept in the audit log)."})
    if len(reason) > REASON_MAX_CHARS:
        raise ValidationError({"reason": f"Keep the reason under {REASON_MAX_CHARS} characters."})
    return reason


def audit_record(
    *,
    project: Project,
    actor: AbstractBaseUser | None,
    action: str,
    target: str = "",
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEntry:
    """Write one entry; `before`/`after` must be JSON-serialisable (the changed fields only)."""
    return AuditEntry.objects.create(
        project=project,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target=target[:200],
        before=before,
        after=after,
        reason=reason.strip()[:REASON_MAX_CHARS],
    )


def audit_log(project: Project, *, actions: Iterable[str] | None = None) -> QuerySet[AuditEntry]:
    """The project's entries, newest first, with their actors; optionally of some actions only.

    An action given as "ranking." matches every action that starts with it.
    """
    entries = AuditEntry.objects.filter(project=project).select_related("actor")
    if actions is None:
        return entries
    exact = [a for a in actions if not a.endswith(".")]
    prefixes = [a for a in actions if a.endswith(".")]
    condition = Q(action__in=exact)
    for prefix in prefixes:
        condition |= Q(action__startswith=prefix)
    return entries.filter(condition)
