"""The data explorer's forms: the filters of its two lists, and a lead's exclusion with a reason."""

from __future__ import annotations

from django import forms

from annotations.audit import REASON_MAX_CHARS
from annotations.explorer import EXCLUDED, REPORTED, ExplorerChoices, ExplorerFilters
from annotations.explorer_sets import ALL_BAD, SetFilters
from annotations.models import Conversation, RankingSet


def _options(values: list[str], everything: str) -> list[tuple[str, str]]:
    return [("", everything), *((value, value) for value in values)]


class ConversationFilterForm(forms.Form):
    """Filters of the conversations list; every field may stay empty."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        help_text='Words in any message; "a phrase", -a word to leave out.',
    )
    source = forms.ChoiceField(
        required=False, choices=[("", "Any source"), *Conversation.Source.choices]
    )
    author = forms.ChoiceField(label="Written by", required=False)
    model = forms.ChoiceField(required=False)
    lang = forms.ChoiceField(label="Language", required=False)
    flag = forms.ChoiceField(required=False)
    since = forms.DateField(label="From", required=False, widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput({"type": "date"}))

    def __init__(self, *args, choices: ExplorerChoices, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["author"].choices = _options(choices.authors, "Anyone")
        self.fields["model"].choices = _options(choices.models, "Any model")
        self.fields["lang"].choices = _options(choices.languages, "Any language")
        self.fields["flag"].choices = self.flag_choices(choices)

    def flag_choices(self, choices: ExplorerChoices) -> list[tuple[str, str]]:
        return [
            ("", "Any"),
            *((name, f"Labelled {name.replace('_', ' ')}") for name in choices.flags),
            (REPORTED, "Reported prompt"),
            (EXCLUDED, "Excluded from exports"),
        ]

    def clean(self) -> dict:
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until < since:
            self.add_error("until", "The end date comes before the start date.")
        return cleaned

    def filters(self) -> ExplorerFilters:
        """The checked filters (call after is_valid())."""
        return ExplorerFilters(**self._common())

    def _common(self) -> dict:
        data = self.cleaned_data
        return {
            "q": data.get("q") or "",
            "source": data.get("source") or "",
            "author": data.get("author") or "",
            "model": data.get("model") or "",
            "lang": data.get("lang") or "",
            "flag": data.get("flag") or "",
            "since": data.get("since"),
            "until": data.get("until"),
        }


class SetFilterForm(ConversationFilterForm):
    """Filters of the ranking sets list: the conversations' ones, a state and an agreement range."""

    state = forms.ChoiceField(
        required=False, choices=[("", "Any state"), *RankingSet.State.choices]
    )
    min_agreement = forms.FloatField(
        label="Agreement from", required=False, min_value=0, max_value=1
    )
    max_agreement = forms.FloatField(label="Agreement to", required=False, min_value=0, max_value=1)

    field_order = ["q", "state", "min_agreement", "max_agreement"]

    def __init__(self, *args, choices: ExplorerChoices, rankers: list[str], **kwargs) -> None:
        super().__init__(*args, choices=choices, **kwargs)
        self.fields["author"].label = "Ranked by"
        self.fields["author"].choices = _options(rankers, "Anyone")
        self.fields["model"].label = "Candidate model"
        self.fields[
            "q"
        ].help_text = 'Words in the context or a candidate; "a phrase", -a word to leave out.'

    def flag_choices(self, choices: ExplorerChoices) -> list[tuple[str, str]]:
        return [
            ("", "Any"),
            (ALL_BAD, 'A trainer marked "all bad"'),
            *((name, f"A candidate labelled {name.replace('_', ' ')}") for name in choices.flags),
            (REPORTED, "Reported prompt"),
            (EXCLUDED, "A ranking or candidate excluded"),
        ]

    def clean(self) -> dict:
        cleaned = super().clean()
        low, high = cleaned.get("min_agreement"), cleaned.get("max_agreement")
        if low is not None and high is not None and high < low:
            self.add_error("max_agreement", "The upper bound is below the lower bound.")
        return cleaned

    def filters(self) -> SetFilters:
        data = self.cleaned_data
        return SetFilters(
            **self._common(),
            state=data.get("state") or "",
            min_agreement=data.get("min_agreement"),
            max_agreement=data.get("max_agreement"),
        )


class ExclusionForm(forms.Form):
    """Exclude something from exports (a reason is needed) or take the exclusion back."""

    action = forms.ChoiceField(choices=[("exclude", "Exclude"), ("include", "Include again")])
    reason = forms.CharField(
        required=False,
        max_length=REASON_MAX_CHARS,
        widget=forms.Textarea({"rows": 2}),
        help_text="Kept in the project's audit log.",
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("action") == "exclude" and not (cleaned.get("reason") or "").strip():
            self.add_error("reason", "Say why it leaves the exports.")
        return cleaned

    @property
    def excluding(self) -> bool:
        return self.cleaned_data["action"] == "exclude"
