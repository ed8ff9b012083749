"""The export form of the exports page: the kind and every choice as a proper field, grouped,
turned into the JSON object the service checks (the service's errors land beside their field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms import BoundField

from annotations.models import Project
from exports.choice_docs import CHOICE_DOCS, CHOICE_NAMES, applies_note, kinds_of
from exports.choices import KIND_LABELS, ExportChoices, ExportKind, PairsFrom, PairStrategy, Ties

LIST_FIELDS = ("languages", "model_versions", "exclude_annotators", "sources", "exclude_sources")

# (legend, fields) in the order the page shows them.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Which data", ("since", "until", "languages", "sources", "exclude_sources")),
    (
        "Ranking sets",
        ("model_versions", "min_agreement", "include_incomplete", "include_cancelled"),
    ),
    ("Left out", ("exclude_annotators", "exclude_flags")),
    (
        "Pairs",
        ("pairs_from", "pair_strategy", "ties", "include_rewrites", "length_balanced"),
    ),
    ("Conversations", ("allow_model_turns", "best_path_only")),
    ("Splits and files", ("validation", "test", "seed", "gzip")),
)


def _enum_choices(enum) -> list[tuple[str, str]]:
    return [(member.value, member.value.replace("_", " ")) for member in enum]


@dataclass(frozen=True)
class FieldGroup:
    legend: str
    kinds: str  # space-separated kinds the group applies to; "" for every kind
    fields: list[tuple[BoundField, str]]  # each with its kinds, the same way


class ExportForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[(kind.value, label) for kind, label in KIND_LABELS.items()],
        initial=ExportKind.PREFERENCES.value,
        help_text="What the rows are. Choices that do not apply to a kind are hidden for it.",
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    languages = forms.CharField(required=False, max_length=2000)
    model_versions = forms.CharField(required=False, max_length=5000)
    min_agreement = forms.FloatField(
        required=False, widget=forms.NumberInput(attrs={"min": 0, "max": 1, "step": "0.05"})
    )
    exclude_annotators = forms.CharField(required=False, max_length=5000)
    exclude_flags = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    pairs_from = forms.ChoiceField(
        required=False, choices=_enum_choices(PairsFrom), initial=PairsFrom.CONSENSUS.value
    )
    pair_strategy = forms.ChoiceField(
        required=False, choices=_enum_choices(PairStrategy), initial=PairStrategy.ALL.value
    )
    ties = forms.ChoiceField(required=False, choices=_enum_choices(Ties), initial=Ties.SKIP.value)
    include_rewrites = forms.BooleanField(required=False)
    length_balanced = forms.BooleanField(required=False)
    include_incomplete = forms.BooleanField(required=False)
    include_cancelled = forms.BooleanField(required=False)
    allow_model_turns = forms.BooleanField(required=False)
    best_path_only = forms.BooleanField(required=False)
    sources = forms.CharField(required=False, max_length=5000)
    exclude_sources = forms.CharField(required=False, max_length=5000)
    validation = forms.FloatField(
        required=False,
        initial=ExportChoices.validation,
        widget=forms.NumberInput(attrs={"min": 0, "max": 0.95, "step": "0.01"}),
    )
    test = forms.FloatField(
        required=False,
        initial=ExportChoices.test,
        widget=forms.NumberInput(attrs={"min": 0, "max": 0.95, "step": "0.01"}),
    )
    seed = forms.IntegerField(required=False, initial=ExportChoices.seed, min_value=0)
    gzip = forms.BooleanField(required=False)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        for name in CHOICE_NAMES:
            doc = CHOICE_DOCS[name]
            self.fields[name].label = doc.label
            self.fields[name].help_text = doc.help + applies_note(name)
        self.fields["exclude_flags"].choices = [
            (label["name"], label["name"].replace("_", " "))
            for label in project.label_schema or []
            if label.get("kind") == "flag"
        ]
        if languages := project.languages:
            self.fields["languages"].widget.attrs["placeholder"] = ", ".join(languages)

    def groups(self) -> list[FieldGroup]:
        out = []
        for legend, names in GROUPS:
            fields = [(self[name], _kinds_attr(kinds_of(name))) for name in names]
            union = frozenset().union(*(kinds_of(name) for name in names))
            out.append(FieldGroup(legend, _kinds_attr(union), fields))
        return out

    def choices_json(self) -> dict[str, Any]:
        """The choices as the service takes them; a field left empty keeps its default."""
        data: dict[str, Any] = {}
        for name in CHOICE_NAMES:
            value = self.cleaned_data.get(name)
            if name in LIST_FIELDS:
                items = [part.strip() for part in (value or "").split(",") if part.strip()]
                if items:
                    data[name] = items
            elif name == "exclude_flags":
                if value:
                    data[name] = list(value)
            elif isinstance(value, bool):
                data[name] = value
            elif name in ("since", "until"):
                if value is not None:
                    data[name] = value.isoformat()
            elif value is not None and value != "":
                data[name] = value
        return data

    def add_service_errors(self, exc: ValidationError) -> None:
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc.messages)
            return
        for key, errors in exc.message_dict.items():
            if key in self.fields:
                self.add_error(key, errors)
            else:
                self.add_error(None, [f"{key}: {error}" for error in errors])

    def focus_first_error(self) -> None:
        """The first field with an error takes the focus (the form is long)."""
        name = next((name for name in self.errors if name in self.fields), None)
        if name is not None:
            self.fields[name].widget.attrs["autofocus"] = True


def _kinds_attr(kinds: frozenset[ExportKind]) -> str:
    """`data-kinds` of a field or group: "" when it applies to every kind."""
    if kinds == frozenset(ExportKind):
        return ""
    return " ".join(sorted(kind.value for kind in kinds))


__all__ = ["ExportForm", "FieldGroup"]
