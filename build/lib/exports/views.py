"""Pages of exports: the project's exports with the form for a new one, one export's live
progress (an htmx fragment of the same view) and its downloads."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers

from annotations.access import project_for_member
from annotations.models import Project
from exports.choice_docs import CHOICE_DOCS
from exports.choices import ExportChoices
from exports.downloads import FILES, ExportNotReady, snapshot_download
from exports.forms import ExportForm
from exports.models import ExportSnapshot
from exports.selectors import project_snapshots
from exports.services import export_request

RECENT_LIMIT = 50
PROGRESS_TEMPLATE = "exports/_export_progress.html"


def _project_snapshot(request: HttpRequest, slug: str, pk: int) -> tuple[Project, ExportSnapshot]:
    """The project (members who may export; trainers 403, others 404) and its snapshot `pk`."""
    project = project_for_member(request.user, slug, capability="export")
    snapshot = project_snapshots(project=project).filter(pk=pk).first()
    if snapshot is None:
        raise Http404("No such export.")
    snapshot.project = project
    return project, snapshot


# Both pages answer htmx polls with a fragment of themselves at the same URL; a cache (or the
# browser's back button) must never hand one out for the other.
@login_required
@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
def exports(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="export")
    snapshots = list(project_snapshots(project=project)[:RECENT_LIMIT])
    context = {
        "project": project,
        "snapshots": snapshots,
        "polling": any(not s.is_finished for s in snapshots),
    }
    if request.htmx and request.method == "GET":
        return render(request, "exports/_snapshot_table.html", context)
    form = ExportForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            snapshot = export_request(
                project=project,
                user=request.user,
                kind=form.cleaned_data["kind"],
                choices=form.choices_json(),
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Export #{snapshot.pk} is queued.")
            return redirect("export-detail", slug=project.slug, pk=snapshot.pk)
    if form.errors:
        form.focus_first_error()
    context["form"] = form
    return render(request, "exports/exports.html", context)


def _progress_context(project: Project, snapshot: ExportSnapshot) -> dict:
    progress = snapshot.progress
    manifest = snapshot.manifest or {}
    share = (manifest.get("length_bias") or {}).get("chosen_longer_share")
    return {
        "project": project,
        "snapshot": snapshot,
        "percent": None if progress is None else int(progress * 100),
        "files": FILES,
        "left_out": [
            (reason.replace("_", " "), n) for reason, n in manifest.get("left_out", {}).items()
        ],
        "longer_share": None if share is None else round(share * 100, 1),
    }


@login_required
@require_GET
@vary_on_headers("HX-Request")
def export_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project, snapshot = _project_snapshot(request, slug, pk)
    context = _progress_context(project, snapshot)
    if request.htmx:
        return render(request, PROGRESS_TEMPLATE, context)
    context["choices"] = changed_choices(snapshot.choices)
    return render(request, "exports/export_detail.html", context)


@login_required
@require_GET
def export_download(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    _, snapshot = _project_snapshot(request, slug, pk)
    try:
        return snapshot_download(
            snapshot, split=request.GET.get("split"), file=request.GET.get("file")
        )
    except ExportNotReady as exc:
        return HttpResponse(exc.message, status=409, content_type="text/plain; charset=utf-8")
    except ValidationError as exc:
        return HttpResponse(
            " ".join(exc.messages), status=400, content_type="text/plain; charset=utf-8"
        )


def changed_choices(stored: dict) -> list[tuple[str, str]]:
    """(label, value) of each stored choice that differs from its default, for a summary."""
    out = []
    for name, value in ExportChoices.from_json(stored).changed().items():
        if name not in CHOICE_DOCS:
            continue
        if isinstance(value, list):
            value = ", ".join(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        out.append((CHOICE_DOCS[name].label, str(value)))
    return out
