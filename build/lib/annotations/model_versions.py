"""Writes of model versions: registering one under its name, and putting it to use in a project."""

from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.models import ModelVersion, Project


@transaction.atomic
def model_version_save(
    *,
    name: str,
    source: str,
    kind: str,
    revision: str = "",
    dtype: str = "auto",
    parent: ModelVersion | None = None,
    notes: str = "",
) -> ModelVersion:
    """Create the ModelVersion called `name`, or bring an existing one up to date.

    Saving the same name twice updates it in place, so commands and tasks can call this on
    every run without piling up rows; a name keeps its kind.
    """
    if kind not in ModelVersion.Kind.values:
        raise ValidationError({"kind": f"Unknown kind {kind!r}."})
    if dtype not in ModelVersion.Dtype.values:
        raise ValidationError({"dtype": f"Unknown dtype {dtype!r}."})
    source = source.strip()
    if not source:
        raise ValidationError({"source": "A hub id or a local directory is required."})

    model_version = ModelVersion.objects.select_for_update().filter(name=name).first()
    if model_version is None:
        model_version = ModelVersion(name=name)
    elif model_version.kind != kind:
        # Projects and messages already point at it as a model of the old kind.
        raise ValidationError(
            {"kind": f"{name} is registered as a {model_version.kind} model, not {kind}."}
        )
    if parent is not None and (parent.pk is None or parent.pk == model_version.pk):
        raise ValidationError({"parent": "The parent must be another, saved model version."})

    model_version.kind = kind
    model_version.source = source
    model_version.revision = revision
    model_version.dtype = dtype
    model_version.parent = parent
    model_version.notes = notes
    model_version.full_clean()
    model_version.save()
    return model_version


@transaction.atomic
def project_use_model(
    *,
    project: Project,
    model_version: ModelVersion,
    as_draft: bool = True,
    as_candidate: bool = True,
    replace_candidates: bool = False,
) -> None:
    """Put a policy model to use in a project: as its draft model, as a candidate model, or both
    (the default). With `replace_candidates` it becomes the only candidate model, so the next
    ranking sets sample from it alone; the models it replaces stay registered, and the messages
    they wrote keep them as authors."""
    if model_version.kind != ModelVersion.Kind.POLICY:
        raise ValidationError(
            {"model_version": f"{model_version} is a {model_version.kind} model, not a policy."}
        )
    if not (as_draft or as_candidate):
        raise ValidationError({"model_version": "Use it as the draft model, a candidate, or both."})
    if as_draft:
        project.draft_model = model_version
        project.save(update_fields=["draft_model"])
    if as_candidate and replace_candidates:
        project.candidate_models.set([model_version])
    elif as_candidate:
        project.candidate_models.add(model_version)
