"""Who may see a generation request or a training run: the one check the API and the pages
share."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404

from annotations.access import can, project_for_member
from trainer_bridge.models import GenerationRequest, TrainingRun
from trainer_bridge.selectors import ordered_outputs


def generation_for_member(
    user: AbstractBaseUser | AnonymousUser, pk: int, *, capability: str | None = None
) -> GenerationRequest:
    """The generation request with its outputs in order, if `user` may see it (Http404 otherwise).

    Members who may generate see every request of their project; other members see only their
    own (a trainer's drafts). With `capability`, members lacking it get AccessDenied.
    A request of another project (or an inactive one) gets the very same 404 as an id that
    does not exist, so ids do not tell outsiders what exists.
    """
    not_found = Http404("No such generation request.")
    generation = (
        GenerationRequest.objects.select_related("project", "model_version", "context")
        .prefetch_related(ordered_outputs())
        .filter(pk=pk)
        .first()
    )
    if generation is None:
        raise not_found
    try:
        project = project_for_member(user, generation.project.slug, capability=capability)
    except Http404:
        raise not_found from None
    if (
        capability is None
        and generation.requested_by_id != user.pk
        and not can(user, project, "generate")
    ):
        raise not_found
    return generation


def training_run_for_member(
    user: AbstractBaseUser | AnonymousUser, pk: int, *, slug: str | None = None
) -> TrainingRun:
    """The training run if `user` may train in its project: members of another role get
    AccessDenied (403), everyone else the same 404 as for an id that does not exist. With
    `slug`, a run of another project than the page's is a 404 too."""
    not_found = Http404("No such training run.")
    run = (
        TrainingRun.objects.select_related(
            "project", "base_model", "reward_model", "result_model", "started_by"
        )
        .filter(pk=pk)
        .first()
    )
    if run is None or (slug is not None and run.project.slug != slug):
        raise not_found
    try:
        project = project_for_member(user, run.project.slug, capability="train")
    except Http404:
        raise not_found from None
    run.project = project
    return run
