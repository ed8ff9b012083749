"""The dashboards for agreement: the project's agreement, one set's drill-down, the model
leaderboard, and the lead's actions on rankings (exclude a trainer, lift that, reopen a set)."""

from __future__ import annotations

from datetime import datetime, time

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from annotations.access import can, project_for_member
from annotations.exclusions import MAX_EXTRA_RANKINGS, REOPENABLE, standing_exclusions
from annotations.models import AnnotatorExclusion, Membership, Project, RankingSet
from labelling.dashboards.actions import (
    action_log,
    exclusion_preview,
    lift_preview,
    set_reopen,
    trainer_exclude,
    trainer_exclusion_lift,
)
from labelling.dashboards.agreement import agreement_dashboard
from labelling.dashboards.charts import csv_response_for
from labelling.dashboards.filters import dashboard_filters
from labelling.dashboards.leaderboard import leaderboard
from labelling.dashboards.pages import dashboard_context, refuses_bad_filters, render_dashboard
from labelling.dashboards.sets import set_drill_down
from labelling.views.errors import Refusal

LOG_SHOWN = 50


@login_required
@require_GET
@refuses_bad_filters
def agreement_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="dashboards")
    filters = dashboard_filters(request.GET)
    dashboard = agreement_dashboard(project=project, span=filters.span)
    if (csv := csv_response_for(request, dashboard.charts, prefix=project.slug)) is not None:
        return csv
    context = dashboard_context(
        project,
        filters,
        "Agreement",
        summary=dashboard.summary,
        charts=dashboard.charts,
        lowest=dashboard.lowest,
    )
    return render_dashboard(
        request, "labelling/dashboards/agreement.html", context, current="dashboard-agreement"
    )


@login_required
@require_GET
@refuses_bad_filters
def models_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="dashboards")
    filters = dashboard_filters(request.GET)
    board = leaderboard(project=project, span=filters.span)
    if (csv := csv_response_for(request, board.charts, prefix=project.slug)) is not None:
        return csv
    context = dashboard_context(
        project, filters, "Model leaderboard", board=board, charts=board.charts
    )
    return render_dashboard(
        request, "labelling/dashboards/models.html", context, current="dashboard-models"
    )


@login_required
@require_GET
def set_page(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="dashboards")
    drill = set_drill_down(project=project, pk=pk)
    can_manage = can(request.user, project, "manage")
    context = {
        "project": project,
        "page_title": f"Ranking set {drill.ranking_set.pk}",
        "drill": drill,
        "can_manage": can_manage,
        "can_reopen": can_manage and drill.ranking_set.state in REOPENABLE,
    }
    return render_dashboard(
        request, "labelling/dashboards/set.html", context, current="dashboard-set"
    )


# ---------------------------------------------------------------------------- actions


class ExcludeForm(forms.Form):
    annotator = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(),
        to_field_name="username",
        label="Trainer",
        error_messages={"invalid_choice": "Choose a trainer of this project."},
    )
    since = forms.DateField(
        label="Exclude rankings from",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Rankings made on this day or later, and any made from now on.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        # Both forms share a page: distinct element ids keep each label on its own field.
        super().__init__(*args, auto_id="exclude-%s", **kwargs)
        self.fields["annotator"].queryset = (
            get_user_model()
            .objects.filter(
                memberships__project=project,
                memberships__role__in=[Membership.Role.TRAINER, Membership.Role.LEAD],
            )
            .order_by("username")
        )

    def since_moment(self) -> datetime:
        """The start of the chosen day in the site's time zone."""
        return timezone.make_aware(datetime.combine(self.cleaned_data["since"], time.min))


class ReopenForm(forms.Form):
    ranking_set = forms.IntegerField(label="Ranking set", min_value=1)
    extra = forms.IntegerField(
        label="More rankings", min_value=1, max_value=MAX_EXTRA_RANKINGS, initial=1
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)
    # Set by the confirmation step: the count the lead saw, so a second submit of the same
    # confirmation is refused instead of asking for the extra rankings twice.
    needed_was = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, auto_id="reopen-%s", **kwargs)
        self.project = project

    def clean_ranking_set(self) -> RankingSet:
        pk = self.cleaned_data["ranking_set"]
        found = RankingSet.objects.filter(project=self.project, pk=pk).first()
        if found is None:
            raise ValidationError(f"This project has no ranking set {pk}.")
        return found


class LiftForm(forms.Form):
    exclusion = forms.IntegerField(label="Exclusion", min_value=1, widget=forms.Select)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, auto_id="lift-%s", **kwargs)
        self.project = project
        # Read once: the page lists the same exclusions beside the form.
        self.standing: list[AnnotatorExclusion] = list(standing_exclusions(project))
        self.fields["exclusion"].widget.choices = [
            ("", "Choose a trainer excluded now"),
            *(
                (e.pk, f"{e.annotator.get_username()}, since {e.since:%Y-%m-%d}")
                for e in self.standing
            ),
        ]

    def clean_exclusion(self) -> AnnotatorExclusion:
        pk = self.cleaned_data["exclusion"]
        found = (
            AnnotatorExclusion.objects.filter(project=self.project, pk=pk)
            .select_related("annotator")
            .first()
        )
        if found is None:
            raise ValidationError(f"This project has no exclusion {pk}.")
        if found.lifted_at is not None:
            raise ValidationError(
                f"This exclusion was already lifted on {found.lifted_at:%Y-%m-%d %H:%M}."
            )
        return found


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _actions_context(
    request: HttpRequest,
    project: Project,
    *,
    exclude: ExcludeForm | None = None,
    reopen: ReopenForm | None = None,
    lift: LiftForm | None = None,
    confirm: dict | None = None,
) -> dict:
    initial_set = request.GET.get("set", "")
    lift = lift or LiftForm(project=project)
    return {
        "project": project,
        "exclude_form": exclude or ExcludeForm(project=project),
        "reopen_form": reopen
        or ReopenForm(
            project=project, initial={"ranking_set": initial_set if initial_set.isdigit() else ""}
        ),
        "lift_form": lift,
        "confirm": confirm,
        "exclusions": lift.standing,
        "log": action_log(project, limit=LOG_SHOWN),
    }


def _answer(request: HttpRequest, context: dict, *, status: int = 200) -> HttpResponse:
    context = {**context, "page_title": "Actions on rankings"}
    response = render_dashboard(
        request, "labelling/dashboards/actions.html", context, current="dashboard-actions"
    )
    # htmx swaps no 4xx answer: a form with errors comes back as a 200 panel showing them.
    response.status_code = 200 if request.htmx else status
    return response


def _exclude(request: HttpRequest, project: Project) -> HttpResponse:
    form = ExcludeForm(request.POST, project=project)
    if not form.is_valid():
        return _answer(request, _actions_context(request, project, exclude=form), status=400)
    annotator, since = form.cleaned_data["annotator"], form.since_moment()
    if request.POST.get("confirmed") != "yes":
        rankings, sets = exclusion_preview(project=project, annotator=annotator, since=since)
        confirm = {
            "action": "exclude",
            "form": form,
            "summary": (
                f"Exclude {_count(rankings, 'ranking')} by {annotator.get_username()} made "
                f"since {since:%Y-%m-%d}, and any they make from now on, and reopen the "
                f"{_count(sets, 'set')} they touched for one more ranking each."
            ),
        }
        return _answer(request, _actions_context(request, project, exclude=form, confirm=confirm))
    try:
        outcome, opened = trainer_exclude(
            project=project,
            annotator=annotator,
            since=since,
            actor=request.user,
            reason=form.cleaned_data["reason"],
        )
    except ValidationError as exc:
        Refusal.of(exc).on_form(form)
        return _answer(request, _actions_context(request, project, exclude=form), status=400)
    notice = (
        f"Excluded {_count(outcome.rankings_excluded, 'ranking')} by "
        f"{annotator.get_username()}; {_count(len(outcome.sets_reopened), 'set')} reopened, "
        f"{_count(opened, 'ranking task')} opened."
    )
    return _done(request, project, notice)


def _reopen(request: HttpRequest, project: Project) -> HttpResponse:
    form = ReopenForm(request.POST, project=project)
    if not form.is_valid():
        return _answer(request, _actions_context(request, project, reopen=form), status=400)
    ranking_set, extra = form.cleaned_data["ranking_set"], form.cleaned_data["extra"]
    if request.POST.get("confirmed") != "yes":
        data = request.POST.copy()
        data["needed_was"] = str(ranking_set.rankings_needed)
        form = ReopenForm(data, project=project)
        form.is_valid()
        confirm = {
            "action": "reopen",
            "form": form,
            "summary": (
                f"Reopen ranking set {ranking_set.pk} ({ranking_set.get_state_display().lower()}, "
                f"{ranking_set.rankings_count} rankings) for {_count(extra, 'more ranking')}."
            ),
        }
        return _answer(request, _actions_context(request, project, reopen=form, confirm=confirm))
    needed_was = form.cleaned_data["needed_was"]
    if needed_was is None:
        form.add_error(None, "Review the reopening and confirm it: the confirmation was missing.")
        return _answer(request, _actions_context(request, project, reopen=form), status=400)
    try:
        outcome = set_reopen(
            ranking_set=ranking_set,
            actor=request.user,
            reason=form.cleaned_data["reason"],
            extra=extra,
            needed_was=needed_was,
        )
    except ValidationError as exc:
        Refusal.of(exc).on_form(form)
        return _answer(request, _actions_context(request, project, reopen=form), status=400)
    notice = (
        f"Ranking set {ranking_set.pk} reopened: it now needs "
        f"{outcome.ranking_set.rankings_needed} rankings; "
        f"{_count(outcome.tasks_opened, 'ranking task')} opened."
    )
    return _done(request, project, notice)


def _lift(request: HttpRequest, project: Project) -> HttpResponse:
    form = LiftForm(request.POST, project=project)
    if not form.is_valid():
        return _answer(request, _actions_context(request, project, lift=form), status=400)
    exclusion = form.cleaned_data["exclusion"]
    trainer = exclusion.annotator.get_username()
    if request.POST.get("confirmed") != "yes":
        rankings, sets = lift_preview(exclusion=exclusion, standing=form.standing)
        confirm = {
            "action": "lift",
            "form": form,
            "summary": (
                f"Lift the exclusion of {trainer} since {exclusion.since:%Y-%m-%d}: the "
                f"{_count(rankings, 'ranking')} it excluded count again, the complete sets among "
                f"the {_count(sets, 'set')} they ranked are recomputed, and {trainer} may rank "
                "again. Sets reopened for one more ranking stay open; the extra ranking does no "
                "harm."
            ),
        }
        return _answer(request, _actions_context(request, project, lift=form, confirm=confirm))
    try:
        outcome = trainer_exclusion_lift(
            exclusion=exclusion, actor=request.user, reason=form.cleaned_data["reason"]
        )
    except ValidationError as exc:
        Refusal.of(exc).on_form(form)
        return _answer(request, _actions_context(request, project, lift=form), status=400)
    notice = (
        f"Lifted the exclusion of {trainer}: {_count(outcome.rankings_included, 'ranking')} "
        f"count again, {_count(len(outcome.sets_refinalized), 'set')} recomputed."
    )
    return _done(request, project, notice)


def _done(request: HttpRequest, project: Project, notice: str) -> HttpResponse:
    if request.htmx:
        context = _actions_context(request, project)
        context["notice"] = notice
        return _answer(request, context)
    messages.success(request, notice)
    return redirect("dashboard-actions", slug=project.slug)


@login_required
@require_http_methods(["GET", "POST"])
def actions_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="manage")
    if request.method == "GET":
        return _answer(request, _actions_context(request, project))
    action = request.POST.get("action")
    if action == "exclude":
        return _exclude(request, project)
    if action == "reopen":
        return _reopen(request, project)
    if action == "lift":
        return _lift(request, project)
    return HttpResponse(
        "action: choose exclude, reopen or lift.", status=400, content_type="text/plain"
    )
