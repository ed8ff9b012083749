"""The filters every dashboard page takes from its query string: a date range, a task kind and a
trainer. Bad input is a 400 naming the field (`DashboardFilterError`), never a 500."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django import forms
from django.utils import timezone

from labelling.dashboards.selectors import DateSpan
from labelling.models import Task

DEFAULT_DAYS = 90
MAX_DAYS = 3 * 366


class DashboardFilterError(ValueError):
    """The query string named a bad value; the message names the field."""


class DashboardFilterForm(forms.Form):
    start = forms.DateField(required=False, input_formats=["%Y-%m-%d"])
    end = forms.DateField(required=False, input_formats=["%Y-%m-%d"])
    kind = forms.ChoiceField(required=False, choices=[("", "All kinds"), *Task.Kind.choices])
    trainer = forms.CharField(required=False, max_length=150)


@dataclass(frozen=True)
class DashboardFilters:
    span: DateSpan
    kind: str = ""
    trainer: str = ""

    @property
    def start(self) -> date:
        return self.span.start

    @property
    def end(self) -> date:
        return self.span.end


def dashboard_filters(params, *, today: date | None = None) -> DashboardFilters:
    """The filters in a query string (`request.GET`); the last 90 days by default."""
    form = DashboardFilterForm(params)
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        raise DashboardFilterError(f"{field}: {' '.join(errors)}")
    today = today or timezone.now().date()
    end = form.cleaned_data["end"] or today
    start = form.cleaned_data["start"] or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise DashboardFilterError("start: the range starts after it ends.")
    if (end - start).days >= MAX_DAYS:
        raise DashboardFilterError(f"start: a range covers at most {MAX_DAYS} days.")
    return DashboardFilters(
        span=DateSpan(start=start, end=end),
        kind=form.cleaned_data["kind"],
        trainer=form.cleaned_data["trainer"].strip(),
    )
