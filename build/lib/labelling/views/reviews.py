"""The leads' review queue: reported prompts, upheld (kept out) or dismissed (back in the pool)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import Template
from django.views.decorators.http import require_GET, require_POST

from annotations.access import project_for_member
from annotations.models import PromptReport
from annotations.reports import (
    decided_prompt_reports,
    open_prompt_reports,
    prompt_report_decide,
    prompt_reports,
)
from labelling.views.errors import Refusal, shows_refusals

PAGE = "labelling/reviews.html"
RECENT_DECISIONS = 10
# htmx requests get only the page's `queue` block: the page template extends this instead of
# base.html, so the fragment and the page cannot drift apart.
QUEUE_ONLY = Template("{% block queue %}{% endblock %}")


def _render_queue(request: HttpRequest, project, *, notice: str = "", status: int = 200):
    context = {
        "project": project,
        "reports": open_prompt_reports(project),
        "decided": decided_prompt_reports(project)[:RECENT_DECISIONS],
        "notice": notice,
        "page_base": QUEUE_ONLY if request.htmx else "base.html",
    }
    return render(request, PAGE, context, status=status)


@login_required
@require_GET
def prompt_reviews(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="manage")
    return _render_queue(request, project)


def _decision_refused(request: HttpRequest, refusal: Refusal, slug: str, pk: int) -> HttpResponse:
    # The only refusal: the report was already decided the other way, and a decision stands.
    if request.htmx:
        return HttpResponse(refusal.text, status=409, content_type="text/plain")
    messages.error(request, refusal.text)
    return redirect("prompt-reviews", slug=slug)


@login_required
@require_POST
@shows_refusals(_decision_refused)
def prompt_report_decision(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="manage")
    report = get_object_or_404(prompt_reports(project), pk=pk)
    decision = request.POST.get("decision")
    if decision not in ("uphold", "dismiss"):
        return HttpResponse("Choose uphold or dismiss.", status=400, content_type="text/plain")
    report = prompt_report_decide(report=report, user=request.user, uphold=decision == "uphold")
    notice = (
        "Report upheld: the prompt stays out of the pool."
        if report.state == PromptReport.State.UPHELD
        else "Report dismissed: the prompt is back in the pool."
    )
    if request.htmx:
        return _render_queue(request, project, notice=notice)
    messages.success(request, notice)
    return redirect("prompt-reviews", slug=project.slug)
