"""The admin's "exclude from exports" and "include again" actions on messages and rankings.

They ask for a reason on a confirmation page (the usual pattern of an admin action with a form),
then go through the curation services one object at a time, so each change is in the audit log
and an excluded ranking's set gets its consensus and agreement computed again, exactly as when a
lead excludes from the data explorer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from annotations.audit import REASON_MAX_CHARS
from annotations.curation import message_exclude, message_include, ranking_exclude, ranking_include
from annotations.models import Message, Project, Ranking

CONFIRMATION_TEMPLATE = "admin/annotations/exclusion_confirmation.html"
LISTED_AT_MOST = 100  # objects named on the confirmation page; the rest are counted


class ExclusionReasonForm(forms.Form):
    """The reason an admin action excludes (required) or includes again (optional)."""

    reason = forms.CharField(
        max_length=REASON_MAX_CHARS,
        widget=forms.Textarea({"rows": 3, "cols": 60}),
        help_text="Kept in each project's audit log.",
    )

    def __init__(self, *args, excluding: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = excluding
        self.fields["reason"].label = (
            "Why they leave the exports" if excluding else "Why (optional)"
        )


@dataclass(frozen=True)
class Curation:
    """One admin action: which service it calls and how it reaches an object's project."""

    name: str
    excluding: bool
    noun: str  # the service's keyword for the object: "message" or "ranking"
    service: Callable[..., Model]
    project_of: Callable[[Model], Project]
    related: tuple[str, ...]  # what to select with each object to reach its project

    @property
    def verb(self) -> str:
        return "exclude" if self.excluding else "include"


def curate(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, c: Curation):
    """Ask for the reason; once given, change each selected object through its service.

    `queryset` is the admin's own (scoped to the projects a non-superuser leads), so nothing
    outside them is reached; the service checks again that the user manages each project.
    """
    form = ExclusionReasonForm(
        request.POST if "apply" in request.POST else None, excluding=c.excluding
    )
    objects = list(queryset.select_related(*c.related).order_by("pk"))
    if form.is_bound and form.is_valid():
        changed, refused = 0, []
        for obj in objects:
            before = obj.is_excluded
            try:
                after = c.service(
                    project=c.project_of(obj),
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    **{c.noun: obj},
                )
            except (ValidationError, PermissionDenied) as exc:
                refused.append(f"{c.noun} {obj.pk}: {'; '.join(_problems(exc))}")
                continue
            changed += after.is_excluded != before
        done = "excluded from exports" if c.excluding else "counted in exports again"
        modeladmin.message_user(request, f"{changed} {c.noun}(s) {done}.", messages.SUCCESS)
        if refused:
            modeladmin.message_user(request, "Refused: " + " | ".join(refused), messages.ERROR)
        return None  # back to the change list
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"{c.verb.capitalize()} {len(objects)} {c.noun}(s)",
        "opts": opts,
        "form": form,
        "excluding": c.excluding,
        "noun": c.noun,
        "listed": objects[:LISTED_AT_MOST],
        "unlisted": max(0, len(objects) - LISTED_AT_MOST),
        "selected": [obj.pk for obj in objects],
        "action": c.name,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, CONFIRMATION_TEMPLATE, context)


def _problems(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return exc.messages
    return [str(exc)]


def curation_pair(
    *,
    noun: str,
    exclude: Callable[..., Model],
    include: Callable[..., Model],
    project_of: Callable[[Model], Project],
    related: tuple[str, ...],
) -> tuple[Curation, Curation]:
    """A model's exclude and include actions: they reach the same objects the same way."""
    shared = {"noun": noun, "project_of": project_of, "related": related}
    return (
        Curation(name="exclude_from_exports", excluding=True, service=exclude, **shared),
        Curation(name="include_in_exports", excluding=False, service=include, **shared),
    )


MESSAGE_EXCLUDE, MESSAGE_INCLUDE = curation_pair(
    noun="message",
    exclude=message_exclude,
    include=message_include,
    project_of=lambda message: message.conversation.project,
    related=("conversation__project",),
)
RANKING_EXCLUDE, RANKING_INCLUDE = curation_pair(
    noun="ranking",
    exclude=ranking_exclude,
    include=ranking_include,
    project_of=lambda ranking: ranking.ranking_set.project,
    related=("ranking_set__project", "annotator"),
)


class MessageCurationActions:
    """Exclude/include actions for the Message admin (mixed into its ModelAdmin)."""

    actions = ["exclude_from_exports", "include_in_exports"]

    @admin.action(description="Exclude the selected messages from exports", permissions=["change"])
    def exclude_from_exports(self, request, queryset: QuerySet[Message]):
        return curate(self, request, queryset, MESSAGE_EXCLUDE)

    @admin.action(description="Include the selected messages in exports", permissions=["change"])
    def include_in_exports(self, request, queryset: QuerySet[Message]):
        return curate(self, request, queryset, MESSAGE_INCLUDE)


class RankingCurationActions:
    """Exclude/include actions for the Ranking admin (mixed into its ModelAdmin)."""

    actions = ["exclude_from_exports", "include_in_exports"]

    @admin.action(description="Exclude the selected rankings from exports", permissions=["change"])
    def exclude_from_exports(self, request, queryset: QuerySet[Ranking]):
        return curate(self, request, queryset, RANKING_EXCLUDE)

    @admin.action(description="Include the selected rankings in exports", permissions=["change"])
    def include_in_exports(self, request, queryset: QuerySet[Ranking]):
        return curate(self, request, queryset, RANKING_INCLUDE)
