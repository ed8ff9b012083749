"""A trainer's home in a project: their progress, what they hold, the queues, recent work."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotations.access import project_for_member
from labelling.progress import ranking_queue, trainer_home

PAGE = "labelling/trainer_home.html"
RANKING_QUEUE = "labelling/_ranking_queue.html"
# While nothing is waiting to be ranked, the ranking queue asks again this often.
POLL_SECONDS = 10


@login_required
@require_GET
def trainer_home_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The page; polled by htmx, only the ranking queue (it stops polling once a set is ready),
    or nothing (204) while the queue says what the page already shows."""
    project = project_for_member(request.user, slug, capability="annotate")
    if request.htmx and not request.htmx.boosted:
        ranking = ranking_queue(user=request.user, project=project)
        if request.GET.get("seen") == ranking.fingerprint():
            return HttpResponse(status=204)  # unchanged: htmx keeps the box and polls on
        context = {"project": project, "ranking": ranking, "poll_seconds": POLL_SECONDS}
        return render(request, RANKING_QUEUE, context)
    home = trainer_home(user=request.user, project=project)
    context = {
        "project": project,
        "home": home,
        "ranking": home.ranking,
        "poll_seconds": POLL_SECONDS,
    }
    return render(request, PAGE, context)
