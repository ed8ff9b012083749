"""Writes to projects: creating and editing a project and its label schema (who belongs to it is
annotations.memberships'). Every change is written to the audit log, before -> after.

Checks that need another app (sampling parameters are the trainer bridge's) are made by the
form that calls these; here each field is checked for what the core itself relies on.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotations.audit import audit_record
from annotations.memberships import membership_add
from annotations.models import Label, Membership, ModelVersion, Project, Ranking

# What a lead may change with project_update (the label schema has its own service, the
# candidate models are a relation and are passed by name).
EDITABLE_FIELDS = (
    "name",
    "description",
    "guidelines",
    "languages",
    "replies_per_set",
    "rankings_per_set",
    "draft_model",
    "sampling",
    "candidate_sampling",
    "comparison_contexts",
    "comparison_queue_depth",
    "include_human_reply",
    "task_lease_seconds",
    "max_open_tasks",
    "keep_autosave_on_expiry",
    "max_turns",
    "max_message_chars",
    "is_active",
)
COMPARISON_CONTEXT_KINDS = ("model_reply", "human_reply", "prompt")
LABEL_KINDS = ("flag", "likert")
# 63: a rename passes through "~name", which must still fit Label.name (64).
LABEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


@dataclass(frozen=True)
class LabelDefinition:
    """One label of a project's schema: a yes/no flag or a Likert scale (1..5).

    `renamed_from` is the name the label had before this edit (empty for a new label): the
    values already recorded under that name follow the label to its new name.
    """

    name: str
    kind: str
    description: str = ""
    renamed_from: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "description": self.description}


def _json_value(project: Project, field: str) -> Any:
    """A field's value as the audit log stores it (a model version by its name)."""
    if field == "draft_model":
        return project.draft_model.name if project.draft_model_id else None
    if field == "candidate_models":
        return sorted(project.candidate_models.values_list("name", flat=True))
    return getattr(project, field)


def _check_languages(languages: Any) -> None:
    if not isinstance(languages, list) or not all(isinstance(code, str) for code in languages):
        raise ValidationError({"languages": "Give a list of language codes."})
    bad = [code for code in languages if not LANGUAGE_CODE.match(code)]
    if bad:
        raise ValidationError(
            {"languages": f"Not a language code: {', '.join(bad)} (use codes such as en, pt-BR)."}
        )
    if len(set(languages)) != len(languages):
        raise ValidationError({"languages": "A language is listed twice."})


def _check_contexts(contexts: Any) -> None:
    if not isinstance(contexts, list) or any(c not in COMPARISON_CONTEXT_KINDS for c in contexts):
        allowed = ", ".join(COMPARISON_CONTEXT_KINDS)
        raise ValidationError({"comparison_contexts": f"Choose among {allowed}."})


def _check_sampling_shape(field: str, value: Any, *, per_model: bool) -> None:
    """The shape the generation code reads: an object of numbers (per model name, for
    candidate_sampling). Ranges are the sampling parameters' own rules, checked by the form."""
    objects = value.values() if per_model and isinstance(value, Mapping) else [value]
    if not isinstance(value, Mapping) or not all(
        isinstance(params, Mapping)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in params.values())
        for params in objects
    ):
        raise ValidationError({field: "Sampling settings must be an object of numbers."})


def _check(project: Project, fields: Mapping[str, Any]) -> None:
    if "languages" in fields:
        _check_languages(fields["languages"])
    if "comparison_contexts" in fields:
        _check_contexts(fields["comparison_contexts"])
    if "sampling" in fields:
        _check_sampling_shape("sampling", fields["sampling"], per_model=False)
    if "candidate_sampling" in fields:
        _check_sampling_shape("candidate_sampling", fields["candidate_sampling"], per_model=True)
    draft = fields.get("draft_model")
    if draft is not None and draft.kind != ModelVersion.Kind.POLICY:
        raise ValidationError({"draft_model": "Drafts come from a policy model."})


def _candidates_by_name(names: Iterable[str]) -> list[ModelVersion]:
    names = list(dict.fromkeys(names))
    found = {m.name: m for m in ModelVersion.objects.filter(name__in=names)}
    missing = [n for n in names if n not in found]
    if missing:
        raise ValidationError({"candidate_models": f"No such model: {', '.join(missing)}."})
    if any(m.kind != ModelVersion.Kind.POLICY for m in found.values()):
        raise ValidationError({"candidate_models": "Candidates come from policy models."})
    return [found[n] for n in names]


def project_audit(
    *,
    project: Project,
    actor: AbstractBaseUser | None,
    changed: Mapping[str, tuple[Any, Any]] | None = None,
    reason: str = "",
) -> None:
    """Log a project made (`changed` None) or the settings that changed, {field: (before,
    after)}. The services and the admin log projects in this one form."""
    if changed is None:
        audit_record(
            project=project,
            actor=actor,
            action="project.create",
            target=f"project {project.slug}",
            after={"slug": project.slug, "name": project.name},
            reason=reason,
        )
        return
    audit_record(
        project=project,
        actor=actor,
        action="project.update",
        target=f"project {project.slug}",
        before={field: pair[0] for field, pair in changed.items()},
        after={field: pair[1] for field, pair in changed.items()},
        reason=reason,
    )


@transaction.atomic
def project_create(
    *,
    slug: str,
    name: str,
    actor: AbstractBaseUser | None = None,
    description: str = "",
    guidelines: str = "",
    lead: AbstractBaseUser | None = None,
    **settings_fields: Any,
) -> Project:
    """Create a project (with `lead` as its first lead, if given) and log it."""
    unknown = set(settings_fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Not project settings: {', '.join(sorted(unknown))}")
    if Project.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"A project with the address {slug!r} already exists."})
    fields = {"name": name, "description": description, "guidelines": guidelines}
    fields.update(settings_fields)
    project = Project(slug=slug, **fields)
    _check(project, fields)
    project.full_clean()
    try:
        with transaction.atomic():  # a savepoint: a racing twin of this request may win the slug
            project.save()
    except IntegrityError:
        raise ValidationError(
            {"slug": f"A project with the address {slug!r} already exists."}
        ) from None
    project_audit(project=project, actor=actor)
    if lead is not None:
        membership_add(project=project, actor=actor, user=lead, role=Membership.Role.LEAD)
    return project


@transaction.atomic
def project_update(
    *,
    project: Project,
    actor: AbstractBaseUser | None,
    candidate_models: Sequence[str] | None = None,
    **fields: Any,
) -> dict[str, tuple[Any, Any]]:
    """Change the given settings; returns {field: (before, after)} of those that changed.

    K and N (replies_per_set, rankings_per_set) apply to ranking sets made from now on: sets
    already made keep the candidates and the number of rankings they were made with.
    """
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Not project settings: {', '.join(sorted(unknown))}")
    project = Project.objects.select_for_update().get(pk=project.pk)
    _check(project, fields)
    changed: dict[str, tuple[Any, Any]] = {}
    for field, value in fields.items():
        before = _json_value(project, field)
        setattr(project, field, value)
        after = _json_value(project, field)
        if before != after:
            changed[field] = (before, after)
    project.full_clean()
    if changed:
        project.save(update_fields=list(changed))
    if candidate_models is not None:
        before = _json_value(project, "candidate_models")
        models = _candidates_by_name(candidate_models)
        if sorted(m.name for m in models) != before:
            project.candidate_models.set(models)
            changed["candidate_models"] = (before, sorted(m.name for m in models))
    if changed:
        project_audit(project=project, actor=actor, changed=changed)
    return changed


def _check_labels(labels: Sequence[LabelDefinition], old_kinds: Mapping[str, str]) -> None:
    names = [label.name for label in labels]
    for label in labels:
        if not LABEL_NAME.match(label.name):
            raise ValidationError(
                {
                    "label_schema": f"Label name {label.name!r}: use lower-case letters, digits "
                    "and underscores, starting with a letter (at most 63)."
                }
            )
        if label.kind not in LABEL_KINDS:
            raise ValidationError(
                {"label_schema": f"Label {label.name!r}: the kind is flag or likert."}
            )
        if label.renamed_from and label.renamed_from not in old_kinds:
            raise ValidationError(
                {
                    "label_schema": f"Label {label.name!r} renames {label.renamed_from!r}, "
                    "which the schema does not have."
                }
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValidationError({"label_schema": f"Two labels are called {', '.join(duplicates)}."})


@transaction.atomic
def label_schema_update(
    *, project: Project, actor: AbstractBaseUser | None, labels: Sequence[LabelDefinition]
) -> bool:
    """Replace the project's label schema with `labels`, in that order; returns whether it
    changed. A renamed label takes its recorded values (labels on messages, flags in rankings)
    with it; a label whose values are recorded cannot change kind (a flag's 1 is not a Likert 1).
    A removed label's values stay stored but are no longer offered or exported."""
    project = Project.objects.select_for_update().get(pk=project.pk)
    before = list(project.label_schema or [])
    old_kinds = {label["name"]: label.get("kind", "") for label in before}
    _check_labels(labels, old_kinds)
    recorded = Label.objects.filter(message__conversation__project=project)
    for label in labels:
        source = label.renamed_from or label.name
        old_kind = old_kinds.get(source)
        if old_kind and old_kind != label.kind and recorded.filter(name=source).exists():
            raise ValidationError(
                {
                    "label_schema": f"Label {source!r} already has values recorded as a "
                    f"{old_kind}; it cannot become a {label.kind}. Add a new label instead."
                }
            )
    after = [label.to_json() for label in labels]
    if after == before:
        return False
    renames = {
        label.renamed_from: label.name
        for label in labels
        if label.renamed_from and label.renamed_from != label.name
    }
    if renames:
        _rename_recorded_labels(project, renames)
    project.label_schema = after
    project.save(update_fields=["label_schema"])
    audit_record(
        project=project,
        actor=actor,
        action="project.label_schema",
        target=f"project {project.slug}",
        before=before,
        after=after,
        reason=", ".join(f"{old} renamed to {new}" for old, new in renames.items()),
    )
    return True


def _rename_recorded_labels(project: Project, renames: Mapping[str, str]) -> None:
    labels = Label.objects.filter(message__conversation__project=project)
    # Two steps through temporary names, so that swapping two names never meets the unique
    # (message, name, annotator) constraint half-way.
    for old in renames:
        labels.filter(name=old).update(name=f"~{old}")
    for old, new in renames.items():
        labels.filter(name=f"~{old}").update(name=new)
    rankings = Ranking.objects.filter(ranking_set__project=project).exclude(flags={})
    changed = []
    for ranking in rankings.only("pk", "flags").iterator(chunk_size=500):
        flags = {
            candidate: [renames.get(name, name) for name in names]
            for candidate, names in ranking.flags.items()
        }
        if flags != ranking.flags:
            ranking.flags = flags
            changed.append(ranking)
    Ranking.objects.bulk_update(changed, ["flags"], batch_size=500)
