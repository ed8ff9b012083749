"""Leads' decisions on reported prompts, and which prompts a report keeps out of the pool.

A prompt with an open report leaves the pool until a lead decides: upholding keeps it out for
good, dismissing puts it back. A decision settles every open report on the same prompt, so one
prompt reported by three trainers needs one decision, not three.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotations.access import AccessDenied, can
from annotations.models import Project
from labelling.models import PromptReport

# Reports in these states keep their prompt out of the pool.
KEEPS_OUT = (PromptReport.State.OPEN, PromptReport.State.UPHELD)


def reported_prompt_ids(project: Project) -> QuerySet:
    """Ids of the project's messages with an open or upheld report (usable as a subquery)."""
    return (
        PromptReport.objects.filter(project=project, state__in=KEEPS_OUT)
        .values_list("message_id", flat=True)
        .distinct()
    )


def open_prompt_reports(project: Project) -> QuerySet[PromptReport]:
    """The review queue: open reports, oldest first, with their prompt and reporter."""
    return (
        PromptReport.objects.filter(project=project, state=PromptReport.State.OPEN)
        .select_related("message", "reporter")
        .order_by("created_at", "id")
    )


def decided_prompt_reports(project: Project) -> QuerySet[PromptReport]:
    """Reports leads have decided, latest decision first."""
    return (
        PromptReport.objects.filter(project=project)
        .exclude(state=PromptReport.State.OPEN)
        .select_related("message", "reporter", "decided_by")
        .order_by("-decided_at", "-id")
    )


@transaction.atomic
def prompt_report_decide(
    *, report: PromptReport, user: AbstractBaseUser, uphold: bool
) -> PromptReport:
    """Uphold (the prompt stays out of the pool) or dismiss (it goes back) a report.

    Every open report on the same prompt gets the same decision. Deciding again the way the
    report was already decided changes nothing (a double click, or two leads agreeing);
    deciding the other way is refused: a decision stands.
    """
    if not can(user, report.project, "manage"):
        raise AccessDenied(report.project, "manage")
    locked = PromptReport.objects.select_for_update().get(pk=report.pk)
    decision = PromptReport.State.UPHELD if uphold else PromptReport.State.DISMISSED
    if locked.state == decision:
        return locked
    if locked.state != PromptReport.State.OPEN:
        raise ValidationError(
            f"This report was already decided: {locked.get_state_display().lower()}."
        )
    PromptReport.objects.filter(
        project_id=locked.project_id, message_id=locked.message_id, state=PromptReport.State.OPEN
    ).update(state=decision, decided_by=user, decided_at=timezone.now())
    locked.refresh_from_db()
    return locked
