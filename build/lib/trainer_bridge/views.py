"""Pages for generation requests: ask a model for replies, follow a request live, retry it."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotations.access import can, project_for_member
from annotations.models import Project
from annotations.selectors import thread_to
from trainer_bridge.access import generation_for_member
from trainer_bridge.generation import (
    generation_request_from_messages,
    generation_request_retry,
)
from trainer_bridge.generation_forms import (
    GenerationFilterForm,
    GenerationForm,
    context_formset,
    request_messages,
)
from trainer_bridge.models import GenerationRequest
from trainer_bridge.selectors import project_generation_requests, queue_position

STATUS_TEMPLATE = "trainer_bridge/partials/_generation_status.html"
PAGE_SIZE = 20


def generation_list(
    project: Project, filters: GenerationFilterForm, page_number: str | None
) -> tuple[Page | None, list[tuple[GenerationRequest, int | None]]]:
    """One page of the project's requests, latest first, as the filters say (none when they
    are invalid), each with its place in the queue."""
    if filters.is_bound and not filters.is_valid():
        return None, []
    requests = project_generation_requests(project)
    if filters.is_bound:
        requests = filters.filtered(requests)
    page = Paginator(requests, PAGE_SIZE).get_page(page_number)
    return page, [(generation, queue_position(generation)) for generation in page.object_list]


@login_required
@require_http_methods(["GET", "POST"])
def generations(request: HttpRequest, slug: str) -> HttpResponse:
    """The form for a new request, and the project's requests paginated and filtered (GET)."""
    project = project_for_member(request.user, slug, capability="generate")
    form = GenerationForm(request.POST or None, project=project)
    turns = context_formset(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        created = _request_from_form(request, project, form, turns)
        if created is not None:
            if not request.htmx:
                messages.success(request, f"Request #{created.pk} is queued.")
                return redirect("generations", slug=project.slug)
            form = GenerationForm(project=project)
            turns = context_formset(None)
            form.fields["prompt"].widget.attrs["autofocus"] = True
        elif request.htmx:
            form.focus_first_error()
    filters = GenerationFilterForm(request.GET or None, project=project)
    page, listed = generation_list(project, filters, request.GET.get("page"))
    context = {
        "project": project,
        "form": form,
        "turns": turns,
        "filters": filters,
        "page": page,
        "query": filters.query_string(),
        "has_models": form.fields["model_version"].queryset.exists(),
        "recent": listed,
    }
    status = 400 if filters.errors else 200
    if request.htmx and not request.htmx.boosted:
        return render(request, "trainer_bridge/_generations_panel.html", context, status=status)
    return render(request, "trainer_bridge/generations.html", context, status=status)


def _request_from_form(
    request: HttpRequest, project: Project, form: GenerationForm, turns
) -> GenerationRequest | None:
    """The request the form asks for, queued; None with the errors put on the form."""
    turns_valid = turns.is_valid() if turns.is_bound else True  # a post without earlier turns
    if not (form.is_valid() and turns_valid):
        return None
    sent = request_messages(project, form, turns)
    if sent is None:
        return None
    try:
        return generation_request_from_messages(
            project=project,
            messages=sent,
            model_version=form.cleaned_data["model_version"],
            purpose=form.purpose_value(),
            n=form.cleaned_data["n"],
            params=form.sampling_params(),
            requested_by=request.user,
        )
    except ValidationError as exc:
        form.add_service_errors(exc)
        return None


@login_required
@require_GET
def generation_status(request: HttpRequest, pk: int) -> HttpResponse:
    generation = generation_for_member(request.user, pk)
    context = {"generation": generation, "position": queue_position(generation)}
    if request.htmx:
        return render(request, STATUS_TEMPLATE, context)
    context["thread"] = thread_to(generation.context)
    context["can_generate"] = can(request.user, generation.project, "generate")
    return render(request, "trainer_bridge/generation_detail.html", context)


@login_required
@require_POST
def generation_retry(request: HttpRequest, pk: int) -> HttpResponse:
    generation = generation_for_member(request.user, pk, capability="generate")
    try:
        generation = generation_request_retry(request=generation)
    except ValidationError as exc:
        if request.htmx:
            return HttpResponse(" ".join(exc.messages), status=409, content_type="text/plain")
        messages.error(request, " ".join(exc.messages))
    else:
        if request.htmx:
            context = {"generation": generation, "position": queue_position(generation)}
            return render(request, STATUS_TEMPLATE, context)
        messages.success(request, f"Request #{generation.pk} is queued again.")
    return redirect("generations", slug=generation.project.slug)
