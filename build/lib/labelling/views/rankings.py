"""The ranking page: claim a set, order its replies (drag or keyboard), flag, rewrite, submit."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotations.access import project_for_member
from annotations.text import parse_json
from labelling.autosave import PageSave, parse_page_position, task_open_page, task_page_autosave
from labelling.claims import task_skip, task_submit
from labelling.comparisons import comparison_create
from labelling.guidelines import guidelines_for_kind
from labelling.leases import task_for_member
from labelling.models import Task
from labelling.rankings import RankingView, ranking_view
from labelling.views.errors import Refusal, refusal_as_json, shows_refusals
from labelling.views.guidelines import first_guidelines_visit
from labelling.views.pages import claim_for_page

TEMPLATE = "labelling/rank.html"
# More turns than this and the earlier ones fold away; the last two always stay open.
OPEN_TURNS_LIMIT = 4
OPEN_TURNS = 2
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PAGE_KEYS = ("page", "seq", "take_over")
FIELD_NAMES = {
    "order": "Order",
    "flags": "Flags",
    "all_bad": "All are bad",
    "rewrite": "Better reply",
    "time_spent_ms": "Time on task",
    "reason": "Reason for skipping",
}


def _ranking_task(request: HttpRequest, task_id: int) -> Task:
    """A ranking task of one of the user's projects, if their role may annotate there."""
    task = task_for_member(task_id=task_id, user=request.user)
    if task.kind != Task.Kind.RANKING:
        raise Http404("No such ranking task.")
    project_for_member(request.user, task.project.slug, capability="annotate")
    return task


def _go_to_next(request: HttpRequest, task: Task) -> HttpResponse:
    """Claim the next set for the trainer and open it, or go back to the project page."""
    return claim_for_page(
        request,
        task.project,
        Task.Kind.RANKING,
        page="rank-task",
        none_left="No more sets are waiting for you to rank in this project.",
        none_to="trainer-home",
    )


def _posted_submission(request: HttpRequest) -> tuple[dict, dict[str, list[str]]]:
    """The form post as the service's submission body, plus errors in reading it."""
    errors: dict[str, list[str]] = {}
    try:
        order = parse_json(request.POST.get("order") or "null", "order")
    except ValidationError:
        order = None
        errors["order"] = ["The order could not be read; reload the page and try again."]
    flags = {
        key.removeprefix("flag-"): request.POST.getlist(key)
        for key in request.POST
        if key.startswith("flag-")
    }
    rewrite = request.POST.get("rewrite", "")
    raw_time = request.POST.get("time_spent_ms", "").strip()
    try:
        time_spent_ms = int(raw_time) if raw_time else None
    except ValueError:  # e.g. 1e400: the page sends whole milliseconds
        time_spent_ms = None
        errors["time_spent_ms"] = ["Time on task must be a whole number of milliseconds."]
    data = {
        "order": order,
        "flags": flags,
        "all_bad": request.POST.get("all_bad") == "on",
        "rewrite": {"role": "assistant", "content": rewrite} if rewrite.strip() else None,
        "time_spent_ms": max(time_spent_ms, 0) if time_spent_ms is not None else None,
    }
    return data, errors


def _rows(view: RankingView, state: dict) -> list[dict]:
    """The candidates in the order to show: the trainer's saved or posted order, else shuffled."""
    letters = {m.pk: LETTERS[i] for i, m in enumerate(view.candidates)}
    by_id = {m.pk: m for m in view.candidates}
    placed: list[tuple[int, bool]] = []
    order = state.get("order")
    if isinstance(order, list):
        for group in order:
            if not isinstance(group, list):
                continue
            for index, pk in enumerate(group):
                if pk in by_id and pk not in {p for p, _ in placed}:
                    placed.append((pk, index > 0 and bool(placed)))
    seen = {pk for pk, _ in placed}
    placed += [(m.pk, False) for m in view.candidates if m.pk not in seen]
    flags = state.get("flags") if isinstance(state.get("flags"), dict) else {}
    labels = [{**label, "title": label["name"].replace("_", " ")} for label in view.labels]
    rows, rank = [], 0
    for index, (pk, tied) in enumerate(placed):
        tied = tied and index > 0
        rank += 0 if tied else 1
        checked = flags.get(str(pk)) or []
        rows.append(
            {
                "message": by_id[pk],
                "letter": letters[pk],
                "rank": rank,
                "tied": tied,
                "flags": [(label, label["name"] in checked) for label in labels],
            }
        )
    return rows


def _order_json(rows: list[dict]) -> str:
    groups: list[list[int]] = []
    for row in rows:
        if row["tied"] and groups:
            groups[-1].append(row["message"].pk)
        else:
            groups.append([row["message"].pk])
    return json.dumps(groups)


def _render_page(
    request: HttpRequest,
    task: Task,
    *,
    state: dict,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> HttpResponse:
    view = ranking_view(task)
    rows = _rows(view, state)
    turns = view.context
    folded = len(turns) > OPEN_TURNS_LIMIT
    rewrite = state.get("rewrite")
    if isinstance(rewrite, dict):  # a message; saved before messages said content: a text
        rewrite = rewrite.get("content", rewrite.get("text"))
    errors = errors or {}
    context = {
        "task": task,
        "project": task.project,
        "ranking_set": view.ranking_set,
        "earlier_turns": turns[:-OPEN_TURNS] if folded else [],
        "open_turns": turns[-OPEN_TURNS:] if folded else turns,
        "rows": rows,
        "order_json": _order_json(rows),
        "labels": view.labels,
        "all_bad": state.get("all_bad") is True,
        "rewrite": rewrite if isinstance(rewrite, str) else "",
        "elapsed_ms": state.get("elapsed_ms") or state.get("time_spent_ms") or 0,
        "errors": [(FIELD_NAMES.get(field, field), msgs) for field, msgs in errors.items()],
        "error_fields": set(errors),
        "page_number": task.pages_opened,
        "revision": task.autosave_revision,
        "guidelines": guidelines_for_kind(task.project.guidelines, Task.Kind.RANKING),
        "guidelines_open": first_guidelines_visit(request, task.project_id, Task.Kind.RANKING),
    }
    return render(request, TEMPLATE, context, status=status)


@login_required
@require_POST
def rank_next(request: HttpRequest, slug: str) -> HttpResponse:
    """Claim a set to rank (or reopen the one the trainer holds)."""
    project = project_for_member(request.user, slug, capability="annotate")
    return claim_for_page(
        request,
        project,
        Task.Kind.RANKING,
        page="rank-task",
        none_left="No sets are waiting for you to rank in this project right now.",
        none_to="trainer-home",
    )


def _rank_refused(request: HttpRequest, refusal: Refusal, task_id: int) -> HttpResponse:
    """The page again with what the trainer posted and what is wrong with it; or, when the task
    is no longer theirs, the page that says so."""
    task = _ranking_task(request, task_id)
    if refusal.conflict:
        return _not_held(request, task, reason=refusal.text)
    posted, _ = _posted_submission(request)
    return _render_page(request, task, state=posted, errors=refusal.errors, status=400)


@login_required
@require_http_methods(["GET", "POST"])
@shows_refusals(_rank_refused)
def rank_task(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _ranking_task(request, task_id)
    if task.state == Task.State.DONE and task.assignee_id == request.user.pk:
        if request.method == "POST":  # a second click on Submit: the ranking is stored once
            return _after_submit(request, task)
        messages.info(request, "You have already ranked this set.")
        return redirect("project-detail", slug=task.project.slug)
    if task.state != Task.State.ASSIGNED or task.assignee_id != request.user.pk:
        return _not_held(request, task)

    if request.method == "GET":
        # Opening the page is activity (it renews the lease); each page load gets a number, so
        # that its saves and an older page's late ones are told apart.
        task = task_open_page(task_id=task.pk, user=request.user)
        # Only the trainer's own work in progress: a project may hand autosaves on with a task,
        # but another trainer's order would bias this one's ranking.
        return _render_page(request, task, state=_own_work(task, request.user))

    data, errors = _posted_submission(request)
    if errors:
        raise ValidationError(errors)
    task = task_submit(task_id=task.pk, user=request.user, data=data)
    return _after_submit(request, task)


def _not_held(request: HttpRequest, task: Task, reason: str = "") -> HttpResponse:
    """The task is not (or no longer) the trainer's: say so, and hand back an unsaved rewrite."""
    context = {
        "task": task,
        "project": task.project,
        "not_held": True,
        "reason": reason,
        "unsaved_rewrite": request.POST.get("rewrite", "").strip(),
    }
    return render(request, TEMPLATE, context, status=409)


def _after_submit(request: HttpRequest, task: Task) -> HttpResponse:
    messages.success(request, "Ranking saved. Thank you!")
    if request.POST.get("then") == "stop":
        return redirect("project-detail", slug=task.project.slug)
    return _go_to_next(request, task)


def _skip_refused(request: HttpRequest, refusal: Refusal, task_id: int) -> HttpResponse:
    task = _ranking_task(request, task_id)
    if refusal.conflict:
        messages.error(request, refusal.text)
        return redirect("project-detail", slug=task.project.slug)
    state = _own_work(task, request.user)
    return _render_page(request, task, state=state, errors=refusal.errors, status=400)


@login_required
@require_POST
@shows_refusals(_skip_refused)
def rank_skip(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _ranking_task(request, task_id)
    task_skip(task_id=task.pk, user=request.user, reason=request.POST.get("skip_reason", ""))
    messages.info(request, "Skipped. You will not be offered that set again.")
    return _go_to_next(request, task)


def _own_work(task: Task, user) -> dict:
    # Only the trainer's own work in progress: a project may hand autosaves on with a task,
    # but another trainer's order would bias this one's ranking.
    return task.autosave if task.autosave.get("user") == user.pk else {}


def _saved_answer(request: HttpRequest, saved: PageSave | Task, page: int = 0) -> dict:
    """Where the stored work stands, with that work when another page of the task wrote it."""
    task = saved.task if isinstance(saved, PageSave) else saved
    page = saved.page if isinstance(saved, PageSave) else page
    answer = {
        "stored": saved.stored if isinstance(saved, PageSave) else False,
        "page": page,
        "revision": task.autosave_revision,
        "writer_page": task.autosave_page,
        "seq": task.autosave_seq,
    }
    if task.autosave_page != page:
        work = _own_work(task, request.user)
        answer["state"] = {key: value for key, value in work.items() if key != "user"}
    return answer


@login_required
@require_http_methods(["GET", "POST"])
@shows_refusals(refusal_as_json)
def rank_autosave(request: HttpRequest, task_id: int) -> HttpResponse:
    """Keep the work in progress on the server; it also renews the lease. GET: where it stands.

    The page posts JSON, or a form with the JSON in `data` from `navigator.sendBeacon` (which
    cannot set the CSRF header) when it is closed or reloaded.
    """
    task = _ranking_task(request, task_id)
    if request.method == "GET":
        if task.state != Task.State.ASSIGNED or task.assignee_id != request.user.pk:
            return JsonResponse({"detail": "You do not hold this task."}, status=409)
        raw = request.GET.get("page") or ""
        page = int(raw) if raw.isdigit() and len(raw) < 16 else 0
        return JsonResponse(_saved_answer(request, task, page))
    if request.content_type == "application/json":
        data = parse_json(request.body or b"{}", "data")
    else:
        data = parse_json(request.POST.get("data") or "{}", "data")
    if not isinstance(data, dict):
        raise ValidationError("Autosaved data must be an object.")
    page, seq, take_over = parse_page_position(data)
    work = {key: value for key, value in data.items() if key not in PAGE_KEYS}
    work["user"] = request.user.pk  # whose work this is (see rank_task)
    saved = task_page_autosave(
        task_id=task.pk, user=request.user, data=work, page=page, seq=seq, take_over=take_over
    )
    return JsonResponse(_saved_answer(request, saved))


def _comparison_refused(request: HttpRequest, refusal: Refusal, slug: str) -> HttpResponse:
    messages.error(request, refusal.text)
    return redirect("project-detail", slug=slug)


@login_required
@require_POST
@shows_refusals(_comparison_refused)
def comparison_new(request: HttpRequest, slug: str) -> HttpResponse:
    """A lead starts a ranking set now: a context is picked and its candidates are requested."""
    project = project_for_member(request.user, slug, capability="manage")
    ranking_set = comparison_create(project=project, requested_by=request.user)
    messages.success(
        request,
        f"Ranking set {ranking_set.pk} is sampling {ranking_set.replies_wanted} candidates; "
        "its ranking tasks open when they are in.",
    )
    return redirect("project-detail", slug=project.slug)
