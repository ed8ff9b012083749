"""A project's members, for its leads: add by username or e-mail, change a role, remove.

Each action is a POST; with htmx the answer is the members panel (its forms with their errors,
status 200 so htmx swaps it in), without it a redirect back (400 and the page on an error).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotations.access import project_for_member
from annotations.memberships import membership_add, membership_change_role
from annotations.models import Membership, Project
from labelling.project_forms import MemberAddForm, MemberRoleForm
from labelling.selectors import project_members
from labelling.services import member_remove

PAGE = "labelling/members.html"
PANEL = "labelling/_members_panel.html"


def _membership(project: Project, pk: int) -> Membership:
    membership = project.memberships.select_related("user").filter(pk=pk).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


def _answer(
    request: HttpRequest,
    project: Project,
    *,
    add_form: MemberAddForm | None = None,
    error_member: int | None = None,
    errors: list[str] | None = None,
    refused: bool = False,
) -> HttpResponse:
    context = {
        "project": project,
        "members": project_members(project),
        "add_form": add_form or MemberAddForm(),
        "role_choices": Membership.Role.choices,
        "error_member": error_member,
        "row_errors": errors or [],
        "section": "members",
    }
    if request.htmx:
        return render(request, PANEL, context)
    if request.method == "POST" and not refused:
        return redirect("members", slug=project.slug)
    return render(request, PAGE, context, status=400 if refused else 200)


def _leave(request: HttpRequest, to: str, **kwargs) -> HttpResponse:
    """Away from the members page, for a lead who just gave up managing the project."""
    response = redirect(to, **kwargs)
    if request.htmx:
        return HttpResponse(status=204, headers={"HX-Redirect": response["Location"]})
    return response


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, slug: str) -> HttpResponse:
    """The members and their roles; a POST adds one."""
    project = project_for_member(request.user, slug, capability="manage")
    if request.method == "GET":
        return _answer(request, project)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        user, role = form.cleaned_data["who"], form.cleaned_data["role"]
        try:
            membership_add(project=project, actor=request.user, user=user, role=role)
        except ValidationError as exc:
            form.add_service_errors(exc)
            return _answer(request, project, add_form=form, refused=True)
        messages.success(request, f"{user.get_username()} added as {role}.")
        return _answer(request, project)
    return _answer(request, project, add_form=form, refused=True)


@login_required
@require_POST
def member_role(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="manage")
    membership = _membership(project, pk)
    form = MemberRoleForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(form.errors["role"])
        membership_change_role(
            membership=membership, actor=request.user, role=form.cleaned_data["role"]
        )
    except ValidationError as exc:
        return _answer(
            request, project, error_member=membership.pk, errors=exc.messages, refused=True
        )
    role = form.cleaned_data["role"]
    messages.success(request, f"{membership.user.get_username()} is now {role}.")
    if membership.user_id == request.user.pk and not request.user.is_superuser and role != "lead":
        return _leave(request, "project-detail", slug=project.slug)  # no longer a lead here
    return _answer(request, project)


@login_required
@require_POST
def member_remove_view(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Remove a member: the tasks they hold go back to the pool; their submitted work stays."""
    project = project_for_member(request.user, slug, capability="manage")
    membership = _membership(project, pk)
    try:
        returned = member_remove(membership=membership, actor=request.user)
    except ValidationError as exc:
        return _answer(
            request, project, error_member=membership.pk, errors=exc.messages, refused=True
        )
    note = (
        f" {returned} task{'s' if returned != 1 else ''} went back to the pool." if returned else ""
    )
    messages.success(request, f"{membership.user.get_username()} removed.{note}")
    if membership.user_id == request.user.pk and not request.user.is_superuser:
        return _leave(request, "home")  # a lead who left no longer reaches the project
    return _answer(request, project)
