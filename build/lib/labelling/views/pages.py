"""Pages for every member: the home page, a project's page, the profile with the API token."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotations.access import project_for_member
from annotations.models import Project
from labelling.claims import task_claim_next
from labelling.selectors import (
    api_token_of,
    failed_generations,
    memberships_of,
    project_members,
    project_queues,
    projects_with_queues,
)
from labelling.services import api_token_regenerate
from labelling.views.errors import Refusal, shows_refusals

FAILED_GENERATIONS_SHOWN = 10


def _claim_refused(
    request: HttpRequest, refusal: Refusal, project: Project, *args, **kwargs
) -> HttpResponse:
    messages.warning(request, refusal.text)  # at the open-task limit
    return redirect("project-detail", slug=project.slug)


@shows_refusals(_claim_refused)
def claim_for_page(
    request: HttpRequest,
    project: Project,
    kind: str,
    *,
    page: str,
    none_left: str,
    none_to: str = "project-detail",
) -> HttpResponse:
    """Claim the user's next task of `kind` and open it on the page named `page`; or go back to
    the page named `none_to` (the project page unless said) with the reason (nothing left), or
    to the project page at the open-task limit."""
    task = task_claim_next(project=project, user=request.user, kind=kind)
    if task is None:
        messages.info(request, none_left)
        return redirect(none_to, slug=project.slug)
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
        "members": project_members(project) if "manage" in queues.capabilities else None,
        "candidate_models": project.candidate_models.all(),
        "failed_generations": failed_generations(project)[:FAILED_GENERATIONS_SHOWN]
        if queues.capabilities & {"manage", "generate"}
        else None,
    }
    return render(request, "labelling/project_detail.html", context)


# The key of a token just issued, kept in the session until the profile page shows it, once.
NEW_TOKEN_SESSION_KEY = "parley_new_api_token"  # noqa: S105 (a session key name)


@login_required
@require_http_methods(["GET"])
def profile(request: HttpRequest) -> HttpResponse:
    token = api_token_of(request.user)
    new = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    context = {
        "token": token,
        # Shown in full once, right after it was issued; afterwards only its last characters.
        "new_key": token.key
        if token and isinstance(new, dict) and new.get("key") == token.key
        else None,
        "first_token": isinstance(new, dict) and bool(new.get("first")),
        "memberships": memberships_of(request.user),
    }
    return render(request, "labelling/profile.html", context)


@login_required
@require_POST
def token_regenerate(request: HttpRequest) -> HttpResponse:
    """Issue a new API token; the old one stops working at once."""
    first = api_token_of(request.user) is None
    token = api_token_regenerate(user=request.user)
    request.session[NEW_TOKEN_SESSION_KEY] = {"key": token.key, "first": first}
    if first:
        messages.success(request, "Your API token is ready. Copy it now: it is shown only once.")
    else:
        messages.success(
            request,
            "A new API token was issued; the previous one no longer works. Copy the new one "
            "now: it is shown only once.",
        )
    return redirect("profile")
