"""A lead's console for a project: creating one (staff), its settings, its guidelines' preview,
its label schema, its sampling settings per model, and the log of every change."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotations.access import project_for_member
from annotations.audit import audit_log
from annotations.projects import label_schema_update, project_create, project_update
from labelling.markup import render_markdown
from labelling.project_forms import (
    GUIDELINES_MAX_CHARS,
    LabelFormSet,
    ProjectCreateForm,
    ProjectSettingsForm,
    SamplingForm,
)
from labelling.selectors import audit_entries_shown

LOG_PAGE_SIZE = 50
RECENT_CHANGES = 10


def _status(*forms) -> int:
    """400 for a POST whose input was refused (the page names the fields), 200 otherwise."""
    return 400 if any(form.is_bound and not form.is_valid() for form in forms) else 200


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    """Staff create a project and become its first lead; the settings page comes next."""
    if not request.user.is_staff:
        raise PermissionDenied("Only staff create projects.")
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create(actor=request.user, lead=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Project {project.name} created. Set it up below.")
            return redirect("project-settings", slug=project.slug)
    return render(request, "labelling/project_new.html", {"form": form}, status=_status(form))


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="manage")
    form = ProjectSettingsForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            changed = project_update(project=project, actor=request.user, **form.settings())
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            if not changed:
                messages.info(request, "Nothing changed.")
            else:
                names = [form.label_of(field) for field in changed]
                messages.success(request, f"Saved: {', '.join(names)}.")
            if {"replies_per_set", "rankings_per_set"} & set(changed):
                messages.info(request, "K and N apply to ranking sets made from now on.")
            return redirect("project-settings", slug=project.slug)
    context = {
        "project": project,
        "form": form,
        "section": "general",
        "recent": audit_entries_shown(audit_log(project)[:RECENT_CHANGES]),
    }
    return render(request, "labelling/project_settings.html", context, status=_status(form))


@login_required
@require_POST
def guidelines_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """The guidelines as trainers will see them: rendered Markdown, sanitised (htmx fragment)."""
    project_for_member(request.user, slug, capability="manage")
    text = request.POST.get("guidelines", "")
    if len(text) > GUIDELINES_MAX_CHARS:
        return HttpResponse(
            f"The guidelines are longer than {GUIDELINES_MAX_CHARS} characters.",
            status=400,
            content_type="text/plain",
        )
    html = render_markdown(text) or "<p class='muted'>Nothing to preview yet.</p>"
    return HttpResponse(html)


@login_required
@require_http_methods(["GET", "POST"])
def label_schema(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="manage")
    initial = LabelFormSet.initial_for(project)
    formset = LabelFormSet(request.POST or None, initial=initial, project=project, prefix="labels")
    if request.method == "POST" and formset.is_valid():
        try:
            changed = label_schema_update(
                project=project, actor=request.user, labels=formset.definitions()
            )
        except ValidationError as exc:
            formset.non_form_errors().extend(exc.messages)
        else:
            messages.success(request, "Label schema saved." if changed else "Nothing changed.")
            return redirect("label-schema", slug=project.slug)
    context = {"project": project, "formset": formset, "section": "labels"}
    return render(request, "labelling/label_schema.html", context, status=_status(formset))


@login_required
@require_http_methods(["GET", "POST"])
def sampling_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's sampling settings, and each candidate model's own (blank: the project's)."""
    project = project_for_member(request.user, slug, capability="manage")
    data = request.POST or None
    own = project.candidate_sampling or {}
    default = SamplingForm(data, settings=project.sampling, prefix="default")
    models = list(project.candidate_models.order_by("name"))
    per_model = [
        (model, SamplingForm(data, settings=own.get(model.name), prefix=f"model-{model.pk}"))
        for model in models
    ]
    forms = [default, *(form for _, form in per_model)]
    if request.method == "POST" and all([form.is_valid() for form in forms]):
        # Settings of models that are no longer candidates are kept: re-adding one keeps them.
        candidate_sampling = {name: values for name, values in own.items()}
        for model, form in per_model:
            if form.values:
                candidate_sampling[model.name] = form.values
            else:
                candidate_sampling.pop(model.name, None)
        try:
            changed = project_update(
                project=project,
                actor=request.user,
                sampling=default.values,
                candidate_sampling=candidate_sampling,
            )
        except ValidationError as exc:
            default.add_service_errors(exc)
        else:
            messages.success(request, "Sampling settings saved." if changed else "Nothing changed.")
            return redirect("sampling-settings", slug=project.slug)
    context = {
        "project": project,
        "default": default,
        "per_model": per_model,
        "section": "sampling",
    }
    return render(request, "labelling/sampling_settings.html", context, status=_status(*forms))


@login_required
@require_GET
def audit_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Every change made to the project, newest first, with who made it and before -> after."""
    project = project_for_member(request.user, slug, capability="manage")
    page = Paginator(audit_log(project), LOG_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "project": project,
        "page": page,
        "entries": audit_entries_shown(page.object_list),
        "section": "log",
    }
    return render(request, "labelling/audit_log.html", context)
