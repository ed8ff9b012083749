"""Who may see and do what in a project: the one place views, APIs and tasks check access.

A user who is not a member of a project gets Http404 rather than 403, so project names and
ids do not leak to outsiders.
"""

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import Http404

from annotations.models import Membership, ModelVersion, Project

Role = Membership.Role

# What each role may do. Leads manage the project, may annotate and may run training; engineers
# take data out, run models and train them; trainers annotate.
CAPABILITIES: dict[str, frozenset[str]] = {
    "annotate": frozenset({Role.TRAINER, Role.LEAD}),
    "manage": frozenset({Role.LEAD}),
    "dashboards": frozenset({Role.LEAD, Role.ENGINEER}),
    # The data explorer: browse and search what was collected (leads also exclude from there,
    # which is "manage").
    "explore": frozenset({Role.LEAD, Role.ENGINEER}),
    "export": frozenset({Role.LEAD, Role.ENGINEER}),
    "generate": frozenset({Role.LEAD, Role.ENGINEER}),
    "train": frozenset({Role.LEAD, Role.ENGINEER}),
}


class AccessDenied(PermissionDenied):
    """A member asked for something their role does not allow (a 403 in views and APIs)."""

    def __init__(self, project: Project, capability: str) -> None:
        super().__init__(f"Your role in {project.slug} does not allow '{capability}'.")
        self.project = project
        self.capability = capability


def projects_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    """Active projects the user is a member of; superusers see every project."""
    if not user.is_authenticated:
        return Project.objects.none()
    projects = Project.objects.filter(is_active=True)
    if user.is_superuser:
        return projects
    return projects.filter(memberships__user=user)


def projects_led_by(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    """Projects (active or not) the user leads; superusers lead every project."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user, memberships__role=Role.LEAD)


def members_of_projects_led_by(user: AbstractBaseUser | AnonymousUser) -> QuerySet:
    """People with any role in a project the user leads (the user included); all for superusers."""
    users = get_user_model().objects.all()
    if user.is_authenticated and user.is_superuser:
        return users
    led = projects_led_by(user).values("pk")
    return users.filter(pk__in=Membership.objects.filter(project__in=led).values("user_id"))


def model_versions_used_by(projects: QuerySet[Project]) -> QuerySet[ModelVersion]:
    """Model versions the projects draft with, sample candidates from, or asked to generate."""
    ids = projects.values("pk")
    return ModelVersion.objects.filter(
        Q(pk__in=Project.objects.filter(pk__in=ids).values("draft_model_id"))
        | Q(
            pk__in=Project.candidate_models.through.objects.filter(project_id__in=ids).values(
                "modelversion_id"
            )
        )
        # Generation requests are the trainer bridge's (which this core never imports): reached
        # by the name of their relation to ModelVersion.
        | Q(
            pk__in=ModelVersion.objects.filter(generation_requests__project_id__in=ids).values("pk")
        )
    )


def role_in_project(user: AbstractBaseUser | AnonymousUser, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    # project_for_member reads the role with the project; later checks in the same request
    # (the service re-checking what the view checked) reuse it instead of asking again.
    known = getattr(project, "_member_role", None)
    if known is not None and known[0] == user.pk:
        role = known[1]
    else:
        role = (
            Membership.objects.filter(user=user, project=project)
            .values_list("role", flat=True)
            .first()
        )
    if role is None and user.is_superuser:
        return Role.LEAD
    return role


def can(user: AbstractBaseUser | AnonymousUser, project: Project, capability: str) -> bool:
    if capability not in CAPABILITIES:
        raise ValueError(f"Unknown capability {capability!r}")
    role = role_in_project(user, project)
    return role is not None and role in CAPABILITIES[capability]


def require(user: AbstractBaseUser | AnonymousUser, project: Project, capability: str) -> None:
    """Raise AccessDenied (a 403) unless the user's role in the project allows `capability`;
    for services that re-check what their door checked."""
    if not can(user, project, capability):
        raise AccessDenied(project, capability)


def capabilities_of(role: str | None) -> set[str]:
    return {name for name, roles in CAPABILITIES.items() if role in roles}


# The capabilities a member is told they have (the project API), each with what it opens. Only
# those whose pages or endpoints exist.
LISTED_CAPABILITIES: dict[str, str] = {
    "annotate": "write demonstrations and rank replies (tasks: pages and /api/v1/tasks/)",
    "manage": "run the project: settings, members, imports, reviews and exclusions "
    "(/p/<slug>/settings/, /members/, /import/, /reviews/)",
    "explore": "browse and search what was collected (/p/<slug>/explore/)",
    "dashboards": "throughput, agreement, trainers, length bias and models (/p/<slug>/dashboard/)",
    "export": "export datasets (/p/<slug>/exports/, /api/v1/projects/<slug>/exports/)",
    "generate": "ask models for replies (/p/<slug>/generations/, .../generations/ API)",
    "train": "run SFT, RM and PPO training (/p/<slug>/training/, .../training-runs/ API)",
}


def listed_capabilities(role: str | None) -> list[str]:
    """The role's capabilities that open a page or an endpoint, sorted."""
    return sorted(capabilities_of(role) & LISTED_CAPABILITIES.keys())


def _with_member_role(projects: QuerySet[Project], user_id: int) -> QuerySet[Project]:
    role = Membership.objects.filter(project=OuterRef("pk"), user_id=user_id).values("role")[:1]
    return projects.annotate(member_role=Subquery(role))


def project_for_member(
    user: AbstractBaseUser | AnonymousUser,
    slug: str,
    *,
    capability: str | None = None,
) -> Project:
    """The project with this slug if the user belongs to it (Http404 otherwise).

    With `capability`, a member whose role lacks it gets AccessDenied (views turn it into 403):
    they already know the project exists.
    """
    if not user.is_authenticated:
        raise Http404("No such project.")
    if user.is_superuser:
        projects = _with_member_role(projects_for_user(user).filter(slug=slug), user.pk)
        project = projects.order_by().first()
    else:
        # Every request about a project starts here: a member's project comes with their
        # membership, and so their role, in one query.
        membership = (
            Membership.objects.select_related("project")
            .filter(user=user, project__slug=slug, project__is_active=True)
            .order_by()
            .first()
        )
        project = membership.project if membership is not None else None
        if project is not None:
            project.member_role = membership.role
    if project is None:
        raise Http404("No such project.")
    project._member_role = (user.pk, project.member_role)
    if capability is not None and not can(user, project, capability):
        raise AccessDenied(project, capability)
    return project


def members_with_roles(project: Project, roles: Iterable[str]) -> QuerySet[Membership]:
    return project.memberships.filter(role__in=list(roles)).select_related("user")
