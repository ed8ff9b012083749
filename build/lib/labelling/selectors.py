"""Reads for the trainer and lead pages: projects with their queues, members, failed
generations, the API token, the audit log in words."""

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, OuterRef, QuerySet
from rest_framework.authtoken.models import Token

from annotations.access import capabilities_of, projects_for_user
from annotations.models import AuditEntry, Conversation, Membership, Project, RankingSet
from annotations.reports import prompt_reports_keeping_out
from labelling.models import Task
from trainer_bridge.models import GenerationRequest


@dataclass
class ProjectQueues:
    project: Project
    role: str | None
    open_tasks: dict[str, int] = field(default_factory=dict)
    my_tasks: int = 0
    prompts_in_pool: int = 0
    sets_collecting: int = 0
    failed_generations: int = 0

    @property
    def capabilities(self) -> set[str]:
        return capabilities_of(self.role)


def projects_with_queues(
    *, user: AbstractBaseUser, only: Project | None = None
) -> list[ProjectQueues]:
    """The user's projects with open work per task kind, in a fixed number of queries."""
    projects_qs = projects_for_user(user).order_by("name")
    if only is not None:
        projects_qs = projects_qs.filter(pk=only.pk)
    projects = list(projects_qs)
    ids = [p.pk for p in projects]
    roles = dict(
        Membership.objects.filter(user=user, project_id__in=ids).values_list("project_id", "role")
    )
    open_counts: dict[int, dict[str, int]] = defaultdict(dict)
    for row in (
        Task.objects.filter(project_id__in=ids, state=Task.State.OPEN)
        .values("project_id", "kind")
        .annotate(n=Count("id"))
    ):
        open_counts[row["project_id"]][row["kind"]] = row["n"]
    mine = dict(
        Task.objects.filter(project_id__in=ids, assignee=user, state=Task.State.ASSIGNED)
        .values("project_id")
        .annotate(n=Count("id"))
        .values_list("project_id", "n")
    )
    # A prompt with an open or upheld report is out of the pool until a lead dismisses it.
    reported = prompt_reports_keeping_out().filter(
        message__conversation=OuterRef("pk"), message__parent=None
    )
    pool = dict(
        Conversation.objects.filter(project_id__in=ids, source=Conversation.Source.PROMPT)
        .exclude(Exists(reported))
        .values("project_id")
        .annotate(n=Count("id"))
        .values_list("project_id", "n")
    )
    collecting = dict(
        RankingSet.objects.filter(project_id__in=ids, state=RankingSet.State.COLLECTING)
        .values("project_id")
        .annotate(n=Count("id"))
        .values_list("project_id", "n")
    )
    failed = dict(
        GenerationRequest.objects.filter(project_id__in=ids, state=GenerationRequest.State.FAILED)
        .values("project_id")
        .annotate(n=Count("id"))
        .values_list("project_id", "n")
    )
    fallback_role = Membership.Role.LEAD if user.is_superuser else None
    return [
        ProjectQueues(
            project=p,
            role=roles.get(p.pk, fallback_role),
            open_tasks=open_counts.get(p.pk, {}),
            my_tasks=mine.get(p.pk, 0),
            prompts_in_pool=pool.get(p.pk, 0),
            sets_collecting=collecting.get(p.pk, 0),
            failed_generations=failed.get(p.pk, 0),
        )
        for p in projects
    ]


def project_queues(*, user: AbstractBaseUser, project: Project) -> ProjectQueues:
    return projects_with_queues(user=user, only=project)[0]


def project_members(project: Project) -> QuerySet[Membership]:
    """The project's memberships with their users, by role, then name."""
    return project.memberships.select_related("user").order_by("role", "user__username")


def memberships_of(user: AbstractBaseUser) -> QuerySet[Membership]:
    """The user's memberships with their projects, by project name."""
    return user.memberships.select_related("project").order_by("project__name")


def failed_generations(project: Project) -> QuerySet[GenerationRequest]:
    """The project's failed generation requests, latest first."""
    return (
        GenerationRequest.objects.filter(project=project, state=GenerationRequest.State.FAILED)
        .select_related("model_version")
        .order_by("-finished_at")
    )


def api_token_of(user: AbstractBaseUser) -> Token | None:
    return Token.objects.filter(user=user).first()


# ---------------------------------------------------------------------------- the audit log


@dataclass(frozen=True)
class FieldChange:
    """One changed field of an audit entry, both sides in words."""

    field: str
    before: str
    after: str


@dataclass(frozen=True)
class AuditShown:
    entry: AuditEntry
    changes: list[FieldChange]


def _in_words(value: object) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(
            f"{item.get('name')} ({item.get('kind')})" if isinstance(item, dict) else str(item)
            for item in value
        )
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def audit_entries_shown(entries: Iterable[AuditEntry]) -> list[AuditShown]:
    """Entries with their changes field by field (`before`/`after` hold the changed fields, or
    one whole value such as a label schema)."""
    shown = []
    for entry in entries:
        before, after = entry.before, entry.after
        if isinstance(before, dict) or isinstance(after, dict):
            before, after = before or {}, after or {}
            fields = list(dict.fromkeys([*before, *after]))
            changes = [
                FieldChange(f, _in_words(before.get(f)), _in_words(after.get(f))) for f in fields
            ]
        elif before is None and after is None:
            changes = []
        else:
            changes = [FieldChange("", _in_words(before), _in_words(after))]
        shown.append(AuditShown(entry=entry, changes=changes))
    return shown
