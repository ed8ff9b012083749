"""Pages for every member: the home page, a project's page, the profile with the API token."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework.authtoken.models import Token

from annotations.access import project_for_member
from annotations.models import GenerationRequest, Project
from labelling.claims import task_claim_next
from labelling.leases import TaskConflict
from labelling.selectors import project_queues, projects_with_queues


def claim_for_page(
    request: HttpRequest, project: Project, kind: str, *, page: str, none_left: str
) -> HttpResponse:
    """Claim the user's next task of `kind` and open it on the page named `page`; or go back to
    the project page with the reason (at the open-task limit, or nothing left)."""
    try:
        task = task_claim_next(project=project, user=request.user, kind=kind)
    except TaskConflict as exc:
        messages.warning(request, exc.message)
        return redirect("project-detail", slug=project.slug)
    if task is None:
        messages.info(request, none_left)
        return redirect("project-detail", slug=project.slug)
    return redirect(page, task_id=task.pk)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request, "labelling/home.html", {"queues": projects_with_queues(user=request.user)}
    )


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug)
    queues = project_queues(user=request.user, project=project)
    context = {
        "project": project,
        "queues": queues,
        "members": project.memberships.select_related("user").order_by("role", "user__username")
        if "manage" in queues.capabilities
        else None,
        "candidate_models": project.candidate_models.all(),
        "failed_generations": GenerationRequest.objects.filter(
            project=project, state=GenerationRequest.State.FAILED
        )
        .select_related("model_version")
        .order_by("-finished_at")[:10]
        if queues.capabilities & {"manage", "generate"}
        else None,
    }
    return render(request, "labelling/project_detail.html", context)


@login_required
@require_http_methods(["GET"])
def profile(request: HttpRequest) -> HttpResponse:
    token = Token.objects.filter(user=request.user).first()
    memberships = request.user.memberships.select_related("project").order_by("project__name")
    return render(request, "labelling/profile.html", {"token": token, "memberships": memberships})


@login_required
@require_POST
def token_regenerate(request: HttpRequest) -> HttpResponse:
    """Issue a new API token; the old one stops working at once."""
    Token.objects.filter(user=request.user).delete()
    Token.objects.create(user=request.user)
    messages.success(request, "A new API token was issued. The previous one no longer works.")
    return redirect("profile")


urlpatterns = [
    path("", home, name="home"),
    path("p/<slug:slug>/", project_detail, name="project-detail"),
    path("accounts/profile/", profile, name="profile"),
    path("accounts/profile/token/", token_regenerate, name="token-regenerate"),
]
