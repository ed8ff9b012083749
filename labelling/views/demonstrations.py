"""The demonstration page: claim a task, write both sides with model drafts, submit or skip."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

import annotations.urls_converters  # noqa: F401 (registers <id:...>)
from annotations.access import project_for_member
from annotations.models import Conversation, GenerationRequest, Message, PromptReport
from annotations.selectors import thread_to
from annotations.text import parse_json
from labelling import demonstrations as demo
from labelling.autosave import PageSave, task_open_page
from labelling.claims import task_skip, task_submit
from labelling.leases import TaskConflict, task_for_member
from labelling.models import Task
from labelling.views.pages import claim_for_page
from trainer_bridge.selectors import queue_position

PAGE = "labelling/demonstration.html"
DRAFT = "labelling/_demo_draft.html"
TURN_FIELD = re.compile(r"^turns\[(\d+)\](?:\.(\w+))?$")
SAVE_EVERY_MS = 3000


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


def _error_lines(exc: ValidationError) -> list[str]:
    if not hasattr(exc, "error_dict"):
        return list(exc.messages)
    lines = []
    for key, errors in exc.message_dict.items():
        match = TURN_FIELD.match(key)
        label = f"Turn {int(match[1]) + 1}: " if match else ""
        lines.extend(f"{label}{error}" for error in errors)
    return lines


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
        ids = (task.result or {}).get("messages") or []
        last = Message.objects.filter(pk__in=ids[-1:]).first()
        context["stored"] = thread_to(last) if last else []
        context["written"] = set(ids)
        return context
    if not context["held"]:
        return context
    # Each page load is numbered, so that its saves and an older page's late ones are told apart.
    task = task_open_page(task_id=task.pk, user=user)
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


@login_required
@require_GET
def demonstration_page(request: HttpRequest, task_id: int) -> HttpResponse:
    return _render_page(request, _demonstration_task(request, task_id))


def _json_errors(exc: ValidationError) -> dict:
    if hasattr(exc, "error_dict"):
        return {key: list(errors) for key, errors in exc.message_dict.items()}
    return {"non_field_errors": list(exc.messages)}


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
        "autosaved_at": task.autosaved_at,
        "lease_expires_at": task.lease_expires_at,
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
def demonstration_autosave(request: HttpRequest, task_id: int) -> JsonResponse:
    """The page's autosave (JSON in, JSON out); renews the lease. GET: where the work stands."""
    task = _demonstration_task(request, task_id)
    if request.method == "GET":
        if task.state != Task.State.ASSIGNED or task.assignee_id != request.user.pk:
            return JsonResponse({"detail": "You do not hold this task."}, status=409)
        return JsonResponse(saved_answer(task, page=_page_number(request.GET.get("page"))))
    try:
        data = page_save_body(request)
        saved = demo.demonstration_autosave(task_id=task_id, user=request.user, data=data)
    except ValidationError as exc:
        return JsonResponse(_json_errors(exc), status=400)
    except TaskConflict as exc:
        return JsonResponse({"detail": exc.message, "code": exc.code}, status=409)
    return JsonResponse(saved_answer(saved))


def _posted_state(request: HttpRequest) -> dict | None:
    raw = request.POST.get("state")
    if not raw:
        return None
    return parse_json(raw, "state")


@login_required
@require_POST
def demonstration_draft(request: HttpRequest, task_id: int) -> HttpResponse:
    """Ask for a draft of the next assistant turn (htmx); answers with the draft fragment.

    The page sends its current work as `state`, stored first so the draft replies to exactly
    what the trainer sees; mode=auto reuses a draft already made for this point.
    """
    task = _demonstration_task(request, task_id)
    context = {"task": task}
    saved = None
    try:
        state = _posted_state(request)
        if state is not None:
            saved = demo.demonstration_autosave(task_id=task_id, user=request.user, data=state)
    except ValidationError as exc:
        # The page always sends its work as it keeps it: this is a malformed request.
        return render(request, DRAFT, {**context, "note": " ".join(_error_lines(exc))}, status=400)
    except TaskConflict as exc:
        return HttpResponse(exc.message, status=409, content_type="text/plain")
    try:
        generation = demo.demonstration_draft_request(
            task_id=task_id, user=request.user, reuse=request.POST.get("mode") == "auto"
        )
    except ValidationError as exc:
        response = render(request, DRAFT, {**context, "note": " ".join(_error_lines(exc))})
    except TaskConflict as exc:
        return HttpResponse(exc.message, status=409, content_type="text/plain")
    else:
        context.update(generation=generation, position=queue_position(generation))
        response = render(request, DRAFT, context)
    if saved is not None:
        trigger_client_event(response, "demo:saved", saved_answer(saved))
    return response


@login_required
@require_GET
def demonstration_draft_status(request: HttpRequest, task_id: int, pk: int) -> HttpResponse:
    """The draft fragment again, polled while the request is queued or running."""
    task = _demonstration_task(request, task_id)
    generation = (
        GenerationRequest.objects.select_related("model_version", "context").filter(pk=pk).first()
    )
    if (
        generation is None
        or task.assignee_id != request.user.pk
        or not demo.draft_belongs_to_task(generation, task)
    ):
        raise Http404("No such draft.")
    context = {"task": task, "generation": generation, "position": queue_position(generation)}
    return render(request, DRAFT, context)


@login_required
@require_POST
def demonstration_submit(request: HttpRequest, task_id: int) -> HttpResponse:
    """Store the page's work, then submit it; a repeated submit finds the task done."""
    task = _demonstration_task(request, task_id)
    try:
        state = _posted_state(request)
        if state is not None and task.state != Task.State.DONE:
            # What the page shows is what it submits, whatever another page saved meanwhile:
            # kept as the autosave too, so the page comes back with it if the server refuses it.
            demo.demonstration_autosave(
                task_id=task_id, user=request.user, data=state, take_over=True
            )
        turns = demo.state_from_autosave(state if state is not None else task.autosave)["turns"]
        task = task_submit(task_id=task_id, user=request.user, data={"turns": turns})
    except ValidationError as exc:
        task = task_for_member(task_id=task_id, user=request.user)
        return _render_page(request, task, errors=_error_lines(exc), status=400)
    except TaskConflict as exc:
        task = task_for_member(task_id=task_id, user=request.user)
        return _render_page(request, task, errors=[exc.message], status=409)
    messages.success(request, "Demonstration submitted. Thank you!")
    return redirect("demonstration", task_id=task.pk)


@login_required
@require_POST
def demonstration_skip(request: HttpRequest, task_id: int) -> HttpResponse:
    """Pass on the task (optionally reporting its prompt) and go on to another one."""
    task = _demonstration_task(request, task_id)
    report = request.POST.get("report") or None
    extra = {"report": report} if report else {}
    reason = request.POST.get("reason", "")
    try:
        task_skip(task_id=task_id, user=request.user, reason=reason, **extra)
    except ValidationError as exc:
        return _render_page(request, task, errors=_error_lines(exc), status=400)
    except TaskConflict as exc:
        return _render_page(request, task, errors=[exc.message], status=409)
    if report:
        label = PromptReport.Reason(report).label.lower()
        messages.info(request, f"Skipped and reported ({label}); a lead will review the prompt.")
    else:
        messages.info(request, "Skipped. Here is another task.")
    return _claim(request, task.project)


urlpatterns = [
    path("p/<slug:slug>/demonstrations/next", demonstration_next, name="demonstration-next"),
    path("demonstrations/<id:task_id>/", demonstration_page, name="demonstration"),
    path(
        "demonstrations/<id:task_id>/autosave",
        demonstration_autosave,
        name="demonstration-autosave",
    ),
    path("demonstrations/<id:task_id>/draft", demonstration_draft, name="demonstration-draft"),
    path(
        "demonstrations/<id:task_id>/draft/<id:pk>",
        demonstration_draft_status,
        name="demonstration-draft-status",
    ),
    path("demonstrations/<id:task_id>/submit", demonstration_submit, name="demonstration-submit"),
    path("demonstrations/<id:task_id>/skip", demonstration_skip, name="demonstration-skip"),
]
