"""Dashboard pages: the overview, the trainers (and a trainer's own page) and length bias.

Leads and engineers ("dashboards") see every page; a trainer sees only their own trainer page;
outsiders get 404. Filters swap the page's panel through htmx; `?format=csv&chart=<name>`
downloads a chart's table (see labelling.dashboards.charts).
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from annotations.access import AccessDenied, can, members_with_roles, project_for_member
from annotations.models import Membership
from labelling.dashboards.charts import csv_response_for
from labelling.dashboards.filters import DashboardFilterError, DashboardFilters, dashboard_filters
from labelling.dashboards.length import length_chart, length_charts
from labelling.dashboards.overview import build_overview
from labelling.dashboards.pages import dashboard_context, refuses_bad_filters, render_dashboard
from labelling.dashboards.selectors import member_user_id, trainer_totals
from labelling.dashboards.trainers import (
    COLUMNS,
    DEFAULT_SORT,
    trainer_rows,
    trainer_trend,
    trainers_chart,
)
from labelling.models import Task


def _trainer_names(project) -> list[str]:
    return [m.user.username for m in members_with_roles(project, [Membership.Role.TRAINER])]


def _trainer_filter(project, filters: DashboardFilters) -> tuple[int, str] | None:
    if not filters.trainer:
        return None
    member = member_user_id(project, filters.trainer)
    if member is None:
        raise DashboardFilterError(f"trainer: no member named {filters.trainer!r} in this project.")
    return member, filters.trainer


@login_required
@require_GET
@refuses_bad_filters
def overview(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="dashboards")
    filters = dashboard_filters(request.GET)
    trainer = _trainer_filter(project, filters)
    figures = build_overview(project, filters, trainer[0] if trainer else None)
    if (csv := csv_response_for(request, figures.charts, prefix=project.slug)) is not None:
        return csv
    context = dashboard_context(
        project,
        filters,
        "Overview",
        overview=figures,
        kinds=Task.Kind.choices,
        trainers=_trainer_names(project),
    )
    return render_dashboard(
        request, "labelling/dashboards/overview.html", context, current="dashboard-overview"
    )


@login_required
@require_GET
@refuses_bad_filters
def trainers(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="dashboards")
    filters = dashboard_filters(request.GET)
    sort = request.GET.get("sort", DEFAULT_SORT)
    if sort not in COLUMNS:
        raise DashboardFilterError(f"sort: one of {', '.join(COLUMNS)}.")
    descending = request.GET.get("dir", "asc") == "desc"
    rows = trainer_rows(project, filters.span, sort=sort, descending=descending)
    chart = trainers_chart(rows)
    if (csv := csv_response_for(request, [chart], prefix=project.slug)) is not None:
        return csv
    context = dashboard_context(
        project,
        filters,
        "Trainers",
        rows=rows,
        chart=chart,
        columns=[
            {"key": key, "heading": heading, "sorted": key == sort}
            for key, (heading, _) in COLUMNS.items()
        ],
        sort=sort,
        descending=descending,
        highlighted=sum(row.highlighted for row in rows),
    )
    return render_dashboard(
        request, "labelling/dashboards/trainers.html", context, current="dashboard-trainers"
    )


@login_required
@require_GET
@refuses_bad_filters
def trainer(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    project = project_for_member(request.user, slug)
    own = username == request.user.get_username()
    if not own and not can(request.user, project, "dashboards"):
        raise AccessDenied(project, "dashboards")
    user_id = member_user_id(project, username)
    if user_id is None:
        raise Http404("No such trainer in this project.")
    filters = dashboard_filters(request.GET)
    found = trainer_totals(project, filters.span, user_id)
    totals = found[0] if found else None
    charts = trainer_trend(project, filters.span, user_id)
    if totals is not None:
        charts.append(length_chart(totals.length_buckets, name="trainer-length", who=username))
    if (csv := csv_response_for(request, charts, prefix=f"{project.slug}-{username}")) is not None:
        return csv
    context = dashboard_context(
        project,
        filters,
        f"Trainer {username}",
        trainer_name=username,
        totals=totals,
        charts=charts,
        show_tabs=can(request.user, project, "dashboards"),
    )
    return render_dashboard(
        request, "labelling/dashboards/trainer.html", context, current="dashboard-trainer"
    )


@login_required
@require_GET
@refuses_bad_filters
def length_bias(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="dashboards")
    filters = dashboard_filters(request.GET)
    charts = length_charts(project, filters.span, _trainer_filter(project, filters))
    if (csv := csv_response_for(request, charts, prefix=project.slug)) is not None:
        return csv
    context = dashboard_context(
        project, filters, "Length bias", charts=charts, trainers=_trainer_names(project)
    )
    return render_dashboard(
        request, "labelling/dashboards/length.html", context, current="dashboard-length"
    )
