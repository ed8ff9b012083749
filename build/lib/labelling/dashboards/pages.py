"""What every dashboard page shares when it renders: the layout, the htmx panel, the filters."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.template import Template
from django.utils.cache import patch_vary_headers

from annotations.access import can
from annotations.models import Project
from labelling.dashboards.filters import DashboardFilterError, DashboardFilters
from labelling.dashboards.selectors import refreshed_through

LAYOUT = "labelling/dashboards/base.html"
# htmx requests (the filters) get only the page's `panel` block: the page template extends this
# instead of the layout, so the fragment and the page cannot drift apart.
PANEL_ONLY = Template("{% block panel %}{% endblock %}")


def dashboard_context(project: Project, filters: DashboardFilters, title: str, **more) -> dict:
    """What every filtered dashboard page's template reads, and the page's own values."""
    return {"project": project, "filters": filters, "page_title": title, **more}


def render_dashboard(
    request: HttpRequest, template: str, context: dict, *, current: str
) -> HttpResponse:
    """The page, or only its panel for an htmx request; `current` is the page's URL name (tabs).

    With a `project` in the context, `can_manage` and `as_of` (when the rollups were last
    brought current) are added unless given.
    """
    partial = bool(getattr(request, "htmx", False)) and not request.htmx.boosted
    context = {**context, "page_base": PANEL_ONLY if partial else LAYOUT, "current": current}
    project = context.get("project")
    if project is not None:
        # The tabs show Actions only to those who may act; the filters say how fresh it all is.
        context.setdefault("can_manage", can(request.user, project, "manage"))
        context.setdefault("as_of", refreshed_through(project))
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def refuses_bad_filters(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A view whose filters (or other query values) are malformed answers 400 with the reason."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except DashboardFilterError as error:
            return HttpResponseBadRequest(str(error), content_type="text/plain")

    return wrapper
