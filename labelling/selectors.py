"""Reads for the trainer and lead pages: projects with their queues, members, failed
generations, the API token."""

from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, OuterRef, QuerySet
from rest_framework.authtoken.models import Token

from annotations.access import capabilities_of, projects_for_user
from annotations.models import Conversation, Membership, Project, RankingSet
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
