"""Reports on prompts: filing them, leads' decisions, and which prompts they keep out of the pool.

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
from annotations.models import Message, Project, PromptReport
from annotations.text import text_problem

# Reports in these states keep their prompt out of the pool.
KEEPS_OUT = (PromptReport.State.OPEN, PromptReport.State.UPHELD)

NOTE_MAX_CHARS = PromptReport._meta.get_field("note").max_length


# ---------------------------------------------------------------- selectors


def prompt_reports_keeping_out(project: Project | None = None) -> QuerySet[PromptReport]:
    """Open or upheld reports, of one project or of every project.

    Callers correlate it with `OuterRef` inside `Exists` (a task's prompt, a conversation's root)
    so that the reports stay the one place that says which prompts are out of the pool.
    """
    reports = PromptReport.objects.filter(state__in=KEEPS_OUT)
    return reports if project is None else reports.filter(project=project)


def prompt_reports(project: Project) -> QuerySet[PromptReport]:
    """Every report of the project, in any state, with the project loaded (for access checks)."""
    return PromptReport.objects.filter(project=project).select_related("project")


def reported_prompt_ids(project: Project) -> QuerySet:
    """Ids of the project's messages with an open or upheld report (usable as a subquery)."""
    # Without order_by() the default ordering (created_at) would join the DISTINCT and repeat ids.
    return (
        prompt_reports_keeping_out(project)
        .order_by()
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


# ---------------------------------------------------------------- services


@transaction.atomic
def prompt_report_create(
    *,
    project: Project,
    message: Message,
    reporter: AbstractBaseUser | None,
    reason: str,
    note: str = "",
) -> PromptReport:
    """File an open report on a prompt of `project`; it leaves the pool until a lead decides.

    Raises ValidationError naming the field (`reason`, `note`, `message`) when one is wrong, and
    AccessDenied when the reporter may not annotate in the project (no reporter: an import).
    """
    if reporter is not None and not can(reporter, project, "annotate"):
        raise AccessDenied(project, "annotate")
    errors: dict[str, str] = {}
    if reason not in PromptReport.Reason.values:
        choices = ", ".join(PromptReport.Reason.values)
        errors["reason"] = f"Unknown reason {reason!r}; use one of {choices}."
    if len(note) > NOTE_MAX_CHARS:
        errors["note"] = f"The note has {len(note)} characters; the limit is {NOTE_MAX_CHARS}."
    elif why := text_problem(note):
        errors["note"] = f"The note {why}."
    if not Message.objects.filter(pk=message.pk, conversation__project=project).exists():
        errors["message"] = "No such message in this project."
    if errors:
        raise ValidationError(errors)
    return PromptReport.objects.create(
        project=project, message=message, reporter=reporter, reason=reason, note=note
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
