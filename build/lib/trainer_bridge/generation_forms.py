"""The generations page's forms: a new request (prompt, earlier turns, model, sampling) and the
filters of the request list."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from annotations.models import Message, ModelVersion, Project
from annotations.services import check_role_follows, check_text
from trainer_bridge.models import GenerationRequest
from trainer_bridge.sampling_params import (
    REPETITION_PENALTY_MAX,
    RULES,
    SEED_LIMIT,
    TEMPERATURE_MAX,
    TOP_K_MAX,
    SamplingParams,
    max_new_tokens_limit,
)
from trainer_bridge.selectors import project_policy_models

# The sampling fields of the form, by the name the service knows them by.
SAMPLING_FIELDS = tuple(RULES)


class GenerationForm(forms.Form):
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        strip=False,
        help_text="The user turn the model replies to (after the earlier turns, if any).",
    )
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), empty_label=None)
    purpose = forms.ChoiceField(
        choices=GenerationRequest.Purpose.choices,
        required=False,
        initial=GenerationRequest.Purpose.CANDIDATES,
        help_text="Candidates are replies to compare; a draft is what a trainer starts from.",
    )
    n = forms.IntegerField(label="Replies (n)", min_value=1, initial=1)
    temperature = forms.FloatField(required=False, help_text="0 picks the likeliest token.")
    top_p = forms.FloatField(
        label="Top p",
        required=False,
        help_text="Sample from the smallest set of tokens this likely together; 1 keeps them all.",
    )
    top_k = forms.IntegerField(
        label="Top k", required=False, help_text="Sample from the k likeliest tokens; 0: no cut."
    )
    max_new_tokens = forms.IntegerField(label="Max new tokens", required=False)
    repetition_penalty = forms.FloatField(
        label="Repetition penalty", required=False, help_text="1 means none."
    )
    seed = forms.IntegerField(
        required=False, help_text="The same seed, model and context give the same replies."
    )

    # Where each service error belongs on this form; the rest go above it.
    SERVICE_FIELDS = {
        "messages": "prompt",
        "context": "prompt",
        "model_version": "model_version",
        "purpose": "purpose",
        "n": "n",
        **{f"params.{name}": name for name in SAMPLING_FIELDS},
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
                "purpose": GenerationRequest.Purpose.CANDIDATES,
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
        self.fields["top_p"].widget.attrs.update({"min": 0, "max": 1, "step": "any"})
        self.fields["top_k"].widget.attrs.update({"min": 0, "max": TOP_K_MAX})
        self.fields["max_new_tokens"].widget.attrs.update({"min": 1, "max": max_new_tokens_limit()})
        self.fields["repetition_penalty"].widget.attrs.update(
            {"min": 0, "max": REPETITION_PENALTY_MAX, "step": "any"}
        )
        self.fields["seed"].widget.attrs.update({"min": 0, "max": SEED_LIMIT - 1})

    def purpose_value(self) -> str:
        return self.cleaned_data.get("purpose") or GenerationRequest.Purpose.CANDIDATES

    def sampling_params(self) -> dict:
        """The parameters the person set (a JSON object), to lay over the project's settings."""
        return {
            key: self.cleaned_data[key]
            for key in SAMPLING_FIELDS
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


class ContextTurnForm(forms.Form):
    """One earlier turn of the context, before the prompt."""

    role = forms.ChoiceField(choices=Message.Role.choices, initial=Message.Role.USER)
    content = forms.CharField(
        label="Text", widget=forms.Textarea(attrs={"rows": 3}), strip=False, required=False
    )

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def is_blank(self) -> bool:
        return not (self.cleaned_data.get("content") or "").strip()


ContextTurnFormSet = forms.formset_factory(
    ContextTurnForm, extra=1, can_delete=True, max_num=50, validate_max=True
)
CONTEXT_PREFIX = "context"


def context_formset(data, *, prefix: str = CONTEXT_PREFIX):
    """The earlier turns of a post; a post without them (no management form) has none."""
    if data is not None and f"{prefix}-TOTAL_FORMS" not in data:
        data = None
    return ContextTurnFormSet(data, prefix=prefix)


def request_messages(project: Project, form: GenerationForm, turns) -> list[dict] | None:
    """The earlier turns (left out: deleted and blank ones) and the prompt as [{role, content}],
    with errors put on the turn or the prompt where the roles do not follow each other or a
    turn's text is too long; None when something is wrong."""
    prompt = form.cleaned_data["prompt"]  # before an error on it takes it out of cleaned_data
    messages: list[dict] = []
    ok = True
    previous: str | None = None
    for index, turn in enumerate(turns.forms, start=1):
        if not turn.is_valid() or turn.cleaned_data.get("DELETE") or turn.is_blank():
            continue
        role = turn.cleaned_data["role"]
        try:
            check_role_follows(parent_role=previous, role=role)
        except ValidationError as exc:
            turn.add_error("role", f"Earlier turn {index}: {' '.join(exc.messages)}")
            ok = False
        try:
            check_text(project=project, text=turn.cleaned_data["content"], field="content")
        except ValidationError as exc:
            turn.add_error("content", f"Earlier turn {index}: {' '.join(exc.messages)}")
            ok = False
            continue
        previous = role
        messages.append({"role": role, "content": turn.cleaned_data["content"]})
    try:
        check_role_follows(parent_role=previous, role=Message.Role.USER)
    except ValidationError as exc:
        form.add_error("prompt", " ".join(exc.messages))
        ok = False
    messages.append({"role": Message.Role.USER, "content": prompt})
    return messages if ok else None


class GenerationFilterForm(forms.Form):
    """The request list's filters (GET); a bad value is an error naming its field."""

    state = forms.ChoiceField(
        choices=[("", "Any state"), *GenerationRequest.State.choices], required=False
    )
    purpose = forms.ChoiceField(
        choices=[("", "Any purpose"), *GenerationRequest.Purpose.choices], required=False
    )
    model = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), required=False, empty_label="Any model"
    )

    def __init__(self, *args, project: Project, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        kwargs.setdefault("auto_id", "id_filter_%s")  # the request form beside it has a purpose
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = models_in_requests(project)

    def filtered(self, requests: QuerySet[GenerationRequest]) -> QuerySet[GenerationRequest]:
        data = self.cleaned_data
        if data.get("state"):
            requests = requests.filter(state=data["state"])
        if data.get("purpose"):
            requests = requests.filter(purpose=data["purpose"])
        if data.get("model"):
            requests = requests.filter(model_version=data["model"])
        return requests

    def query_string(self) -> str:
        """The valid filters as a query string, for the page links ("" when none)."""
        if not self.is_bound or not self.is_valid():
            return ""
        return urlencode({name: self.data[name] for name in self.fields if self.data.get(name)})


def models_in_requests(project: Project) -> QuerySet[ModelVersion]:
    """The models the project generates with or has asked before, by name."""
    asked = GenerationRequest.objects.filter(project=project).values("model_version")
    return (
        ModelVersion.objects.filter(
            Q(pk__in=asked) | Q(draft_projects=project) | Q(candidate_projects=project)
        )
        .distinct()
        .order_by("name")
    )
