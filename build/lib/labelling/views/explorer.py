"""The data explorer: leads and engineers browse and search what was collected (conversation
trees, ranking sets with every trainer's order); leads exclude a message or a ranking from
exports, with a reason."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotations.access import can, project_for_member
from annotations.curation import message_exclude, message_include, ranking_exclude, ranking_include
from annotations.explorer import (
    conversation_for_explorer,
    conversation_tree,
    conversations_explored,
    conversations_newest_first,
    explorer_choices,
    tree_node,
    with_summaries,
)
from annotations.explorer_sets import (
    rankers_of,
    ranking_set_for_explorer,
    ranking_set_view,
    ranking_sets_explored,
    ranking_sets_newest_first,
    with_candidate_counts,
)
from annotations.models import Message, Project, Ranking
from labelling.explorer_forms import ConversationFilterForm, ExclusionForm, SetFilterForm
from labelling.explorer_pages import CappedPaginator
from labelling.views.errors import Refusal

PER_PAGE = 25
CONVERSATIONS = "labelling/explore_conversations.html"
CONVERSATION_RESULTS = "labelling/_explore_conversation_results.html"
CONVERSATION = "labelling/explore_conversation.html"
NODE = "labelling/_explore_node.html"
SETS = "labelling/explore_sets.html"
SET_RESULTS = "labelling/_explore_set_results.html"
SET = "labelling/explore_set.html"
SET_RANKINGS = "labelling/_explore_set_rankings.html"


def _list_page(
    request: HttpRequest,
    project: Project,
    form,
    rows,
    summarise,
    page_template,
    results,
    newest_first=None,
):
    """A list page (or, for htmx, its results): 400 with the form's errors when it is invalid."""
    paginator = CappedPaginator(
        rows if rows is not None else [],
        PER_PAGE,
        summarise=summarise,
        newest_first=newest_first,
    )
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "project": project,
        "form": form,
        "page": page,
        "can_manage": can(request.user, project, "manage"),
    }
    status = 200 if form.is_valid() else 400
    return render(request, results if request.htmx else page_template, context, status=status)


# Fields whose choices come from the project's data (kept a few minutes by the selectors).
DATA_CHOICES = {"author", "model", "lang"}


def _filter_form(make):
    """The filter form on the kept choices, or, when one of those choices is refused, on
    choices read afresh (a person, model or language new to the project since they were kept).
    `make(fresh)` builds the form."""
    form = make(False)
    if not form.is_valid() and DATA_CHOICES & set(form.errors):
        form = make(True)
    return form


@login_required
@require_GET
def explore_conversations(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="explore")
    form = _filter_form(
        lambda fresh: ConversationFilterForm(
            request.GET, choices=explorer_choices(project, fresh=fresh)
        )
    )
    rows = newest_first = None
    if form.is_valid():
        rows = conversations_explored(project=project, filters=form.filters())
        newest_first = conversations_newest_first(project=project, filters=form.filters())
    return _list_page(
        request,
        project,
        form,
        rows,
        with_summaries,
        CONVERSATIONS,
        CONVERSATION_RESULTS,
        newest_first,
    )


@login_required
@require_GET
def explore_sets(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="explore")
    form = _filter_form(
        lambda fresh: SetFilterForm(
            request.GET,
            choices=explorer_choices(project, fresh=fresh),
            rankers=rankers_of(project, fresh=fresh),
        )
    )
    rows = newest_first = None
    if form.is_valid():
        rows = ranking_sets_explored(project=project, filters=form.filters())
        newest_first = ranking_sets_newest_first(project=project, filters=form.filters())
    return _list_page(
        request, project, form, rows, with_candidate_counts, SETS, SET_RESULTS, newest_first
    )


def _conversation_page(
    request: HttpRequest, project: Project, pk: int, *, errors=None, status: int = 200
) -> HttpResponse:
    """The tree page; `errors` (error_pk, form_errors) puts a refused exclusion's errors by its
    message."""
    conversation = conversation_for_explorer(project=project, pk=pk)
    if conversation is None:
        raise Http404("No such conversation.")
    query = (request.GET.get("q") or "")[:200]
    context = {
        "project": project,
        "conversation": conversation,
        "nodes": conversation_tree(conversation=conversation, query=query),
        "query": query,
        "can_manage": can(request.user, project, "manage"),
        **(errors or {}),
    }
    return render(request, CONVERSATION, context, status=status)


@login_required
@require_GET
def explore_conversation(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="explore")
    return _conversation_page(request, project, pk)


@login_required
@require_GET
def explore_set(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="explore")
    ranking_set = ranking_set_for_explorer(project=project, pk=pk)
    if ranking_set is None:
        raise Http404("No such ranking set.")
    return _set_page(request, project, ranking_set)


def _set_page(
    request, project, ranking_set, *, errors=None, notice: str = "", status: int = 200
) -> HttpResponse:
    """The set's page; for htmx, its consensus and rankings only."""
    context = {
        "project": project,
        "view": ranking_set_view(ranking_set=ranking_set, viewer=request.user),
        "can_manage": can(request.user, project, "manage"),
        **(errors or {}),
        "notice": notice,
    }
    template = SET_RANKINGS if request.htmx else SET
    return render(request, template, context, status=status)


@login_required
@require_POST
def message_exclusion(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Exclude a message from exports (with a reason) or include it again."""
    project = project_for_member(request.user, slug, capability="manage")
    message = (
        Message.objects.filter(pk=pk, conversation__project=project)
        .select_related("conversation__project")
        .first()
    )
    if message is None:
        raise Http404("No such message.")
    form = ExclusionForm(request.POST)
    if form.is_valid():
        change = message_exclude if form.excluding else message_include
        try:
            message = change(
                project=project,
                message=message,
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
        except ValidationError as exc:
            Refusal.of(exc).on_form(form)
    if form.errors:
        errors = {"error_pk": message.pk, "form_errors": form.errors}
        if request.htmx:
            context = {
                "node": tree_node(message=message),
                "project": project,
                "can_manage": True,
                **errors,
            }
            return render(request, NODE, context, status=400)
        return _conversation_page(
            request, project, message.conversation_id, errors=errors, status=400
        )
    notice = "Message excluded from exports." if message.is_excluded else "Message counts again."
    if request.htmx:
        context = {
            "node": tree_node(message=message),
            "project": project,
            "can_manage": True,
            "notice": notice,
        }
        return render(request, NODE, context)
    messages.success(request, notice)
    url = reverse("explore-conversation", args=[project.slug, message.conversation_id])
    return redirect(f"{url}#message-{message.pk}")


@login_required
@require_POST
def ranking_exclusion(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Exclude a ranking from exports and its set's consensus (with a reason), or include it."""
    project = project_for_member(request.user, slug, capability="manage")
    ranking = (
        Ranking.objects.filter(pk=pk, ranking_set__project=project)
        .select_related("ranking_set__project", "ranking_set__context__conversation")
        .first()
    )
    if ranking is None:
        raise Http404("No such ranking.")
    form = ExclusionForm(request.POST)
    if form.is_valid():
        change = ranking_exclude if form.excluding else ranking_include
        try:
            ranking = change(
                project=project,
                ranking=ranking,
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
        except ValidationError as exc:
            Refusal.of(exc).on_form(form)
    ranking_set = ranking_set_for_explorer(project=project, pk=ranking.ranking_set_id)
    if form.errors:
        return _set_page(
            request,
            project,
            ranking_set,
            errors={"error_pk": ranking.pk, "form_errors": form.errors},
            status=400,
        )
    notice = (
        "Ranking excluded: the consensus and agreement no longer count it."
        if ranking.is_excluded
        else "Ranking counts again."
    )
    if request.htmx:
        return _set_page(request, project, ranking_set, notice=notice)
    messages.success(request, notice)
    return redirect("explore-set", slug=project.slug, pk=ranking_set.pk)
