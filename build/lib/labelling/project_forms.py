"""The forms of a lead's console: a new project, its settings, its label schema, its sampling
settings per model, and adding a member. They check input and name the field; the writes are
annotations.projects' and annotations.memberships' services."""

from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Q

from annotations.models import Membership, ModelVersion, Project
from annotations.projects import COMPARISON_CONTEXT_KINDS, LABEL_NAME, LabelDefinition
from trainer_bridge.sampling_params import RULES, SamplingParams

CONTEXT_LABELS = {
    "model_reply": "After a model-written reply",
    "human_reply": "After a human-written reply",
    "prompt": "At a fresh prompt",
}
GUIDELINES_MAX_CHARS = 100_000


class ConsoleForm(forms.Form):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    # Service fields whose form field has another name.
    RENAMED: Mapping[str, str] = {}

    def add_service_errors(self, exc: ValidationError) -> None:
        """Put a service's refusal on the fields it names; the rest above the form."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for field, errors in exc.message_dict.items():
            field = self.RENAMED.get(field, field)
            self.add_error(field if field in self.fields else None, errors)


class ProjectCreateForm(ConsoleForm):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(
        label="Address",
        max_length=64,
        help_text="Letters, digits, hyphens: the project's pages are under /p/<address>/.",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"].lower()
        if Project.objects.filter(slug=slug).exists():
            raise ValidationError("A project with this address already exists.")
        return slug


def _policy_models():
    return ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY).order_by("name")


class ProjectSettingsForm(ConsoleForm):
    """Everything of a project but its label schema and sampling settings (pages of their own)."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    guidelines = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14}),
        required=False,
        max_length=GUIDELINES_MAX_CHARS,
        strip=False,
        help_text="Markdown, shown to trainers on every task. Scripts and raw HTML are removed.",
    )
    languages = forms.CharField(
        max_length=500,
        help_text="Language codes separated by commas, e.g. en, de, pt-BR.",
    )
    replies_per_set = forms.IntegerField(
        label="Replies per ranking set (K)", min_value=2, max_value=9
    )
    rankings_per_set = forms.IntegerField(label="Rankings per set (N)", min_value=1, max_value=20)
    draft_model = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        empty_label="No drafts",
        help_text="The model that writes a draft of each assistant turn in demonstrations.",
    )
    candidate_models = forms.ModelMultipleChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        to_field_name="name",
        help_text="The models whose replies are sampled for ranking sets.",
    )
    include_human_reply = forms.BooleanField(
        required=False, label="Add the existing human reply as one of the K candidates"
    )
    comparison_contexts = forms.MultipleChoiceField(
        choices=[(kind, CONTEXT_LABELS[kind]) for kind in COMPARISON_CONTEXT_KINDS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Where a ranking set may cut a conversation.",
    )
    comparison_queue_depth = forms.IntegerField(
        label="Ranking queue depth",
        min_value=0,
        max_value=10_000,
        help_text="Ranking sets kept collecting; a background task tops the queue up.",
    )
    task_lease_minutes = forms.IntegerField(
        label="Lease length (minutes)",
        min_value=1,
        max_value=7 * 24 * 60,
        help_text="How long a trainer holds a task before it returns to the pool.",
    )
    max_open_tasks = forms.IntegerField(
        label="Open-task limit", min_value=1, max_value=100, help_text="Tasks one trainer may hold."
    )
    keep_autosave_on_expiry = forms.BooleanField(
        required=False, label="Hand an abandoned task's autosaved text to the next trainer"
    )
    max_turns = forms.IntegerField(label="Most messages in a dialogue", min_value=2, max_value=200)
    max_message_chars = forms.IntegerField(
        label="Longest message (characters)", min_value=1, max_value=1_000_000
    )

    RENAMED = {"task_lease_seconds": "task_lease_minutes"}

    def __init__(self, *args, project: Project, **kwargs) -> None:
        kwargs.setdefault("initial", self.initial_for(project))
        super().__init__(*args, **kwargs)
        self.fields["draft_model"].queryset = _policy_models()
        self.fields["candidate_models"].queryset = _policy_models()

    @staticmethod
    def initial_for(project: Project) -> dict[str, Any]:
        return {
            "name": project.name,
            "description": project.description,
            "guidelines": project.guidelines,
            "languages": ", ".join(project.languages or []),
            "replies_per_set": project.replies_per_set,
            "rankings_per_set": project.rankings_per_set,
            "draft_model": project.draft_model_id,
            "candidate_models": list(project.candidate_models.values_list("name", flat=True)),
            "include_human_reply": project.include_human_reply,
            "comparison_contexts": list(project.comparison_contexts or []),
            "comparison_queue_depth": project.comparison_queue_depth,
            "task_lease_minutes": max(1, project.task_lease_seconds // 60),
            "max_open_tasks": project.max_open_tasks,
            "keep_autosave_on_expiry": project.keep_autosave_on_expiry,
            "max_turns": project.max_turns,
            "max_message_chars": project.max_message_chars,
        }

    def label_of(self, field: str) -> str:
        """A project field's name as this form shows it."""
        field = self.RENAMED.get(field, field)
        return str(self.fields[field].label or field.replace("_", " ").capitalize())

    def clean_languages(self) -> list[str]:
        codes = [code.strip() for code in self.cleaned_data["languages"].split(",")]
        codes = [code for code in codes if code]
        if not codes:
            raise ValidationError("Give at least one language code.")
        return codes

    def settings(self) -> dict[str, Any]:
        """The cleaned values as project_update's keyword arguments."""
        data = dict(self.cleaned_data)
        data["task_lease_seconds"] = data.pop("task_lease_minutes") * 60
        data["candidate_models"] = [model.name for model in data["candidate_models"]]
        return data


# ---------------------------------------------------------------------------- label schema


class LabelForm(ConsoleForm):
    original_name = forms.CharField(widget=forms.HiddenInput, required=False)
    name = forms.CharField(
        max_length=63,
        help_text="Lower-case letters, digits and underscores, e.g. fails_instruction.",
    )
    kind = forms.ChoiceField(
        choices=[("flag", "Yes/no flag"), ("likert", "Likert scale, 1 to 5")], initial="flag"
    )
    description = forms.CharField(max_length=500, required=False)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not LABEL_NAME.match(name):
            raise ValidationError(
                "Use lower-case letters, digits and underscores, starting with a letter."
            )
        return name

    def definition(self) -> LabelDefinition:
        return LabelDefinition(
            name=self.cleaned_data["name"],
            kind=self.cleaned_data["kind"],
            description=self.cleaned_data.get("description", "").strip(),
            renamed_from=self.cleaned_data.get("original_name", ""),
        )


class BaseLabelFormSet(forms.BaseFormSet):
    def __init__(self, *args, project: Project, **kwargs) -> None:
        self.known_names = {label["name"] for label in project.label_schema or []}
        super().__init__(*args, **kwargs)

    @staticmethod
    def initial_for(project: Project) -> list[dict[str, str]]:
        return [
            {
                "original_name": label["name"],
                "name": label["name"],
                "kind": label.get("kind", "flag"),
                "description": label.get("description", ""),
            }
            for label in project.label_schema or []
        ]

    def clean(self) -> None:
        kept = self.kept_forms()
        if any(form.errors for form in kept):
            return
        seen: dict[str, int] = {}
        for position, form in enumerate(kept, start=1):
            original = form.cleaned_data.get("original_name", "")
            if original and original not in self.known_names:
                form.add_error(None, "This label is no longer in the schema; reload the page.")
            name = form.cleaned_data["name"]
            if name in seen:
                form.add_error("name", f"Label {seen[name]} is already called {name}.")
            seen.setdefault(name, position)

    def kept_forms(self) -> list[LabelForm]:
        """The labels not marked for removal (new rows left blank are no label), in the order
        asked for: by position, then as listed."""
        initial = self.initial_form_count()
        kept = [
            (index, form)
            for index, form in enumerate(self.forms)
            if not form.cleaned_data.get("DELETE") and (index < initial or form.has_changed())
        ]

        def position(pair: tuple[int, LabelForm]) -> tuple[bool, int, int]:
            order = pair[1].cleaned_data.get("ORDER")
            return (order is None, order or 0, pair[0])

        return [form for _, form in sorted(kept, key=position)]

    def definitions(self) -> list[LabelDefinition]:
        return [form.definition() for form in self.kept_forms()]


LabelFormSet = forms.formset_factory(
    LabelForm,
    formset=BaseLabelFormSet,
    extra=0,
    can_order=True,
    can_delete=True,
    max_num=50,
    validate_max=True,
    absolute_max=60,
)


# ---------------------------------------------------------------------------- sampling


SAMPLING_LABELS = {
    "temperature": "Temperature",
    "top_p": "Top p",
    "top_k": "Top k",
    "max_new_tokens": "Max new tokens",
    "repetition_penalty": "Repetition penalty",
    "seed": "Seed",
}


class SamplingForm(ConsoleForm):
    """Sampling parameters, each optional: blank keeps the default (for a candidate model, the
    project's own setting)."""

    def __init__(self, *args, settings: Mapping[str, Any] | None, **kwargs) -> None:
        kwargs.setdefault("initial", dict(settings or {}))
        super().__init__(*args, **kwargs)
        for name, rule in RULES.items():
            field_class = forms.IntegerField if rule.kind is int else forms.FloatField
            self.fields[name] = field_class(
                label=SAMPLING_LABELS[name],
                required=False,
                help_text=f"Must be {rule.meaning()}.",
                widget=forms.NumberInput(attrs={"step": "any" if rule.kind is float else "1"}),
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        values = {name: value for name, value in cleaned.items() if value is not None}
        try:
            SamplingParams.from_json(values, field_prefix="p")
        except ValidationError as exc:
            for key, errors in exc.message_dict.items():
                self.add_error(key.removeprefix("p."), errors)
        self.values = values
        return cleaned


# ---------------------------------------------------------------------------- members


ROLE_CHOICES = Membership.Role.choices


class MemberAddForm(ConsoleForm):
    who = forms.CharField(
        label="Username or e-mail", max_length=254, help_text="The person needs an account."
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Membership.Role.TRAINER)

    RENAMED = {"user": "who"}

    def clean_who(self) -> AbstractBaseUser:
        who = self.cleaned_data["who"].strip()
        users = list(
            get_user_model()
            .objects.filter(Q(username__iexact=who) | Q(email__iexact=who), is_active=True)
            .order_by("pk")[:3]
        )
        exact = [user for user in users if user.get_username() == who]
        if exact:
            return exact[0]
        if len(users) == 1:
            return users[0]
        if not users:
            raise ValidationError("No active account has this username or e-mail.")
        raise ValidationError("Several accounts match; give the username.")


class MemberRoleForm(ConsoleForm):
    role = forms.ChoiceField(choices=ROLE_CHOICES)
