"""Pages for generation requests: ask a model for replies, follow a request live, retry it."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotations.access import can, project_for_member
from annotations.models import Message, ModelVersion, Project
from annotations.selectors import thread_to
from trainer_bridge.access import generation_for_member
from trainer_bridge.generation import (
    generation_request_from_messages,
    generation_request_retry,
)
from trainer_bridge.models import GenerationRequest
from trainer_bridge.sampling_params import TEMPERATURE_MAX, SamplingParams, max_new_tokens_limit
from trainer_bridge.selectors import ordered_outputs, project_policy_models, queue_position

STATUS_TEMPLATE = "trainer_bridge/partials/_generation_status.html"
RECENT_LIMIT = 20


class GenerationForm(forms.Form):
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        strip=False,
        help_text="The user turn the model replies to.",
    )
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), empty_label=None)
    n = forms.IntegerField(label="Replies (n)", min_value=1, initial=1)
    temperature = forms.FloatField(required=False)
    max_new_tokens = forms.IntegerField(label="Max new tokens", required=False)

    # Where each service error belongs on this form; the rest go above it.
    SERVICE_FIELDS = {
        "messages": "prompt",
        "context": "prompt",
        "model_version": "model_version",
        "n": "n",
        "params.temperature": "temperature",
        "params.max_new_tokens": "max_new_tokens",
    }

    def __init__(self, *args, project: Project, **kwargs) -> None:
        try:
            defaults = SamplingParams.for_project(project.sampling)
        except ValidationError:
            defaults = None  # the project's settings are broken: submitting says where
        kwargs.setdefault(
            "initial",
            {
                "model_version": project.draft_model_id,
                "temperature": defaults.temperature if defaults else None,
                "max_new_tokens": defaults.max_new_tokens if defaults else None,
            },
        )
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["model_version"].queryset = project_policy_models(project)
        limit = project.max_generations_per_request
        self.fields["n"].widget.attrs["max"] = limit
        self.fields["n"].help_text = f"At most {limit} in this project."
        self.fields["temperature"].widget.attrs.update(
            {"min": 0, "max": TEMPERATURE_MAX, "step": "any"}
        )
        self.fields["max_new_tokens"].widget.attrs.update({"min": 1, "max": max_new_tokens_limit()})

    def sampling_params(self) -> dict:
        """The parameters the person set (a JSON object), to lay over the project's settings."""
        return {
            key: self.cleaned_data[key]
            for key in ("temperature", "max_new_tokens")
            if self.cleaned_data.get(key) is not None
        }

    def add_service_errors(self, exc: ValidationError) -> None:
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc.messages)
            return
        for key, errors in exc.message_dict.items():
            field = self.SERVICE_FIELDS.get(key)
            self.add_error(field, errors if field else [f"{key}: {e}" for e in errors])

    def focus_first_error(self) -> None:
        field = next((name for name in self.errors if name in self.fields), "prompt")
        self.fields[field].widget.attrs["autofocus"] = True


def recent_generations(project: Project) -> list[tuple[GenerationRequest, int | None]]:
    requests = (
        GenerationRequest.objects.filter(project=project)
        .select_related("model_version", "context")
        .prefetch_related(ordered_outputs())
        .order_by("-queued_at", "-id")[:RECENT_LIMIT]
    )
    return [(generation, queue_position(generation)) for generation in requests]


@login_required
@require_http_methods(["GET", "POST"])
def generations(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="generate")
    form = GenerationForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            created = generation_request_from_messages(
                project=project,
                messages=[{"role": Message.Role.USER, "content": form.cleaned_data["prompt"]}],
                model_version=form.cleaned_data["model_version"],
                purpose=GenerationRequest.Purpose.CANDIDATES,
                n=form.cleaned_data["n"],
                params=form.sampling_params(),
                requested_by=request.user,
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            if not request.htmx:
                messages.success(request, f"Request #{created.pk} is queued.")
                return redirect("generations", slug=project.slug)
            form = GenerationForm(project=project)
            form.fields["prompt"].widget.attrs["autofocus"] = True
    if request.method == "POST" and form.errors and request.htmx:
        form.focus_first_error()
    context = {
        "project": project,
        "form": form,
        "has_models": form.fields["model_version"].queryset.exists(),
        "recent": recent_generations(project),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "trainer_bridge/_generations_panel.html", context)
    return render(request, "trainer_bridge/generations.html", context)


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
