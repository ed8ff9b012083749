"""The demonstration page: claim a task, write both sides with model drafts, submit or skip."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from annotations.access import project_for_member
from annotations.models import Conversation, Message, PromptReport
from annotations.text import parse_json
from annotations.timestamps import iso_utc
from labelling import demonstrations as demo
from labelling.autosave import PageSave, task_open_page
from labelling.claims import task_skip, task_submit
from labelling.guidelines import guidelines_for_kind
from labelling.leases import task_for_member
from labelling.models import Task
from labelling.views.errors import Refusal, refusal_as_json, refusal_as_text, shows_refusals
from labelling.views.guidelines import first_guidelines_visit
from labelling.views.pages import claim_for_page
from trainer_bridge.selectors import queue_position

PAGE = "labelling/demonstration.html"
DRAFT = "labelling/_demo_draft.html"
TURN_FIELD = re.compile(r"^turns\[(\d+)\](?:\.(\w+))?$")
SAVE_EVERY_MS = 3000
PREVIEW = "labelling/_demo_preview.html"


def _demonstration_task(request: HttpRequest, task_id: int) -> Task:
    """A demonstration task of one of the user's projects, if their role may annotate there."""
    task = task_for_member(task_id=task_id, user=request.user)
    if task.kind != Task.Kind.DEMONSTRATION:
        raise Http404("No such demonstration task.")
    project_for_member(request.user, task.project.slug, capability="annotate")
    return task


def _claim(request: HttpRequest, project) -> HttpResponse:
    return claim_for_page(
        request,
        project,
        Task.Kind.DEMONSTRATION,
        page="demonstration",
        none_left="No demonstration tasks are left in this project.",
    )


@login_required
@require_POST
def demonstration_next(request: HttpRequest, slug: str) -> HttpResponse:
    """The "Write a demonstration" button: the task the trainer holds, or a new one."""
    return _claim(request, project_for_member(request.user, slug, capability="annotate"))


def _turn_label(field: str) -> str:
    """Errors about a turn start with its number: `turns[2].content` -> "Turn 3: "."""
    match = TURN_FIELD.match(field)
    return f"Turn {int(match[1]) + 1}: " if match else ""


def _start_kind(thread: list[Message]) -> str:
    if not thread:
        return "blank"
    is_prompt = len(thread) == 1 and thread[0].conversation.source == Conversation.Source.PROMPT
    return "prompt" if is_prompt else "continue"


def _page_context(request: HttpRequest, task: Task) -> dict:
    project = task.project
    user = request.user
    context = {
        "task": task,
        "project": project,
        "held": task.state == Task.State.ASSIGNED and task.assignee_id == user.pk,
        "done": task.state == Task.State.DONE and task.assignee_id == user.pk,
    }
    if context["done"]:
        context["stored"] = demo.submitted_thread(task)
        context["written"] = set((task.result or {}).get("messages") or [])
        return context
    if not context["held"]:
        return context
    # Each page load is numbered, so that its saves and an older page's late ones are told apart.
    task = task_open_page(task_id=task.pk, user=user)
    context["guidelines_open"] = first_guidelines_visit(
        request, project.pk, Task.Kind.DEMONSTRATION
    )
    context["guidelines"] = guidelines_for_kind(project.guidelines, Task.Kind.DEMONSTRATION)
    context["task"] = task
    state = demo.state_from_autosave(task.autosave)
    turns = [demo.Turn(**t) for t in state["turns"]]
    generation = demo.current_draft(task, turns) if project.draft_model_id else None
    thread = demo.anchor_thread(task)
    context.update(
        thread=thread,
        start=_start_kind(thread),
        state=state,
        next_role=demo.next_role(task, turns),
        generation=generation,
        position=queue_position(generation) if generation else None,
        report_reasons=PromptReport.Reason.choices,
        config={
            "task": task.pk,
            "urls": {
                "autosave": reverse("demonstration-autosave", args=[task.pk]),
                "draft": reverse("demonstration-draft", args=[task.pk]),
            },
            "firstRole": demo.first_role(task),
            "maxTurns": demo.turns_allowed(task),
            "maxChars": project.max_message_chars,
            "hasDraftModel": project.draft_model_id is not None,
            "saveEveryMs": SAVE_EVERY_MS,
            "page": task.pages_opened,
            "revision": task.autosave_revision,
        },
    )
    return context


def _render_page(
    request: HttpRequest, task: Task, *, errors: list[str] = (), status: int = 200
) -> HttpResponse:
    context = _page_context(request, task)
    context["errors"] = errors
    return render(request, PAGE, context, status=status)


def _page_refused(request: HttpRequest, refusal: Refusal, task_id: int) -> HttpResponse:
    """The page again, saying what was refused."""
    task = task_for_member(task_id=task_id, user=request.user)
    return _render_page(request, task, errors=refusal.lines(_turn_label), status=refusal.status)


@login_required
@require_GET
def demonstration_page(request: HttpRequest, task_id: int) -> HttpResponse:
    return _render_page(request, _demonstration_task(request, task_id))


def saved_answer(saved: PageSave | Task, page: int = 0) -> dict:
    """What a page learns after saving (or asking): where the stored work stands.

    `state` comes with it when the stored work is another page's, for the page to offer (or,
    if the trainer has not typed there yet, to take).
    """
    task = saved.task if isinstance(saved, PageSave) else saved
    answer = {
        "stored": saved.stored if isinstance(saved, PageSave) else False,
        "page": saved.page if isinstance(saved, PageSave) else page,
        "revision": task.autosave_revision,
        "writer_page": task.autosave_page,
        "seq": task.autosave_seq,
        "autosaved_at": iso_utc(task.autosaved_at),
        "lease_expires_at": iso_utc(task.lease_expires_at),
    }
    if task.autosave_page != answer["page"]:
        answer["state"] = demo.state_from_autosave(task.autosave)
    return answer


def _page_number(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and len(raw) < 16 else 0


def page_save_body(request: HttpRequest) -> object:
    """A page's save: a JSON body, or (from `navigator.sendBeacon`, which cannot set headers) a
    form with the CSRF token and the JSON in `data`."""
    if request.content_type == "application/json":
        return parse_json(request.body or b"{}", "data")
    return parse_json(request.POST.get("data") or "{}", "data")


@login_required
@require_http_methods(["GET", "POST"])
@shows_refusals(refusal_as_json)
def demonstration_autosave(request: HttpRequest, task_id: int) -> JsonResponse:
    """The page's autosave (JSON in, JSON out); renews the lease. GET: where the work stands."""
    task = _demonstration_task(request, task_id)
    if request.method == "GET":
        if task.state != Task.State.ASSIGNED or task.assignee_id != request.user.pk:
            return JsonResponse({"detail": "You do not hold this task."}, status=409)
        return JsonResponse(saved_answer(task, page=_page_number(request.GET.get("page"))))
    data = page_save_body(request)
    saved = demo.demonstration_autosave(task_id=task_id, user=request.user, data=data)
    return JsonResponse(saved_answer(saved))


def _posted_state(request: HttpRequest) -> dict | None:
    raw = request.POST.get("state")
    if not raw:
        return None
    return parse_json(raw, "state")


def _draft_refused(request: HttpRequest, refusal: Refusal, task_id: int) -> HttpResponse:
    if refusal.conflict:
        return refusal_as_text(request, refusal)
    # The page always sends its work as it keeps it: this is a malformed request.
    task = _demonstration_task(request, task_id)
    note = " ".join(refusal.lines(_turn_label))
    return render(request, DRAFT, {"task": task, "note": note}, status=400)


@login_required
@require_POST
@shows_refusals(_draft_refused)
def demonstration_draft(request: HttpRequest, task_id: int) -> HttpResponse:
    """Ask for a draft of the next assistant turn (htmx); answers with the draft fragment.

    The page sends its current work as `state`, stored first so the draft replies to exactly
    what the trainer sees; mode=auto reuses a draft already made for this point.
    """
    task = _demonstration_task(request, task_id)
    state = _posted_state(request)
    saved = None
    if state is not None:
        saved = demo.demonstration_autosave(task_id=task_id, user=request.user, data=state)
    response = _draft_fragment(request, task)
    if saved is not None and response.status_code == 200:  # the fragment, not a conflict
        trigger_client_event(response, "demo:saved", saved_answer(saved))
    return response


def _no_draft(request: HttpRequest, refusal: Refusal, task: Task) -> HttpResponse:
    if refusal.conflict:
        return refusal_as_text(request, refusal)
    # Why there is no draft to ask for here (no draft model, the user speaks next): said in
    # the fragment, as an answer rather than an error.
    return render(request, DRAFT, {"task": task, "note": " ".join(refusal.lines(_turn_label))})


@shows_refusals(_no_draft)
def _draft_fragment(request: HttpRequest, task: Task) -> HttpResponse:
    generation = demo.demonstration_draft_request(
        task_id=task.pk, user=request.user, reuse=request.POST.get("mode") == "auto"
    )
    context = {"task": task, "generation": generation, "position": queue_position(generation)}
    return render(request, DRAFT, context)


@login_required
@require_GET
def demonstration_draft_status(request: HttpRequest, task_id: int, pk: int) -> HttpResponse:
    """The draft fragment again, polled while the request is queued or running."""
    task = _demonstration_task(request, task_id)
    generation = demo.task_draft_request(task, pk)
    if generation is None or task.assignee_id != request.user.pk:
        raise Http404("No such draft.")
    context = {"task": task, "generation": generation, "position": queue_position(generation)}
    return render(request, DRAFT, context)


@login_required
@require_POST
@shows_refusals(_page_refused)
def demonstration_submit(request: HttpRequest, task_id: int) -> HttpResponse:
    """Store the page's work, then submit it; a repeated submit finds the task done."""
    task = _demonstration_task(request, task_id)
    state = _posted_state(request)
    if state is not None and task.state != Task.State.DONE:
        # What the page shows is what it submits, whatever another page saved meanwhile: kept
        # as the autosave too, so the page comes back with it if the server refuses it.
        demo.demonstration_autosave(task_id=task_id, user=request.user, data=state, take_over=True)
    turns = demo.state_from_autosave(state if state is not None else task.autosave)["turns"]
    task = task_submit(task_id=task_id, user=request.user, data={"turns": turns})
    messages.success(request, "Demonstration submitted. Thank you!")
    return redirect("demonstration", task_id=task.pk)


@login_required
@require_POST
@shows_refusals(_page_refused)
def demonstration_skip(request: HttpRequest, task_id: int) -> HttpResponse:
    """Pass on the task (optionally reporting its prompt) and go on to another one."""
    task = _demonstration_task(request, task_id)
    report = request.POST.get("report") or None
    extra = {"report": report} if report else {}
    task_skip(task_id=task_id, user=request.user, reason=request.POST.get("reason", ""), **extra)
    if report:
        label = PromptReport.Reason(report).label.lower()
        messages.info(request, f"Skipped and reported ({label}); a lead will review the prompt.")
    else:
        messages.info(request, "Skipped. Here is another task.")
    return _claim(request, task.project)


@login_required
@require_POST
def demonstration_preview(request: HttpRequest, task_id: int) -> HttpResponse:
    """A turn's text rendered as Markdown and sanitised (htmx), as it would read formatted."""
    task = _demonstration_task(request, task_id)
    content = request.POST.get("content", "")
    limit = task.project.max_message_chars
    if len(content) > limit:
        note = f"content: the turn has {len(content)} characters; the limit is {limit}."
        return render(request, PREVIEW, {"note": note}, status=400)
    return render(request, PREVIEW, {"content": content, "empty": not content.strip()})
