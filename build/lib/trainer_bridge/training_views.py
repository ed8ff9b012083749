"""Pages of training runs: a project's runs, the form that starts one, and a run's live page
(state, log tail, a chart of its metrics; cancel; put its model to use; evaluate a reward
model). Engineers and leads; trainers get 403, everyone else 404."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from annotations.access import can, project_for_member
from annotations.models import ModelVersion, Project
from exports.models import ExportSnapshot
from trainer_bridge.access import training_run_for_member
from trainer_bridge.models import RewardEvaluation, TrainingRun
from trainer_bridge.training.hyperparameters import STAGES, hyperparameter_fields
from trainer_bridge.training_events import training_settings
from trainer_bridge.training_inputs import STAGE_SNAPSHOT_KIND
from trainer_bridge.training_runs import (
    IDEMPOTENCY_KEY_MAX,
    reward_evaluation_request,
    training_run_cancel,
    training_run_start,
    training_run_start_once,
    training_run_use_model,
)
from trainer_bridge.training_selectors import (
    latest_metrics,
    latest_reward_evaluation,
    project_runs,
    project_training_models,
    run_metric_series,
)

RECENT_LIMIT = 50
LIVE_TEMPLATE = "trainer_bridge/_training_run_live.html"
HP_PREFIX = "hp_"


class TrainingRunForm(forms.Form):
    """What a run needs; the hyper-parameter fields are the chosen stage's, with its defaults."""

    stage = forms.ChoiceField(choices=TrainingRun.Stage.choices, initial="rm")
    snapshots = forms.TypedMultipleChoiceField(
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        help_text="sft snapshots for SFT, preferences for the reward model, prompts for PPO.",
    )
    base_model = forms.ChoiceField(help_text="The policy the run starts from.")
    reward_model = forms.ChoiceField(required=False, help_text="PPO only: the reward model.")
    backend = forms.ChoiceField(choices=TrainingRun.Backend.choices)
    # New with every form shown: a second submit of the same form (a double click, a resent
    # POST) finds the run the first one started instead of starting another.
    idempotency_key = forms.CharField(
        required=False, max_length=IDEMPOTENCY_KEY_MAX, widget=forms.HiddenInput
    )

    # Where each service error belongs on this form; the rest go above it.
    SERVICE_FIELDS = ("stage", "snapshots", "base_model", "reward_model", "backend")

    def __init__(self, *args, project: Project, stage: str, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.stage = stage if stage in STAGES else "rm"
        self.fields["stage"].initial = self.stage
        self.fields["idempotency_key"].initial = uuid.uuid4().hex
        self.fields["backend"].initial = training_settings()["DEFAULT_BACKEND"]
        snapshots = ExportSnapshot.objects.filter(
            project=project, state=ExportSnapshot.State.DONE, kind__in=STAGE_SNAPSHOT_KIND.values()
        ).order_by("-created_at", "-pk")[:200]
        # The stage's kind first; the others stay choosable, and the service says why not.
        wanted = STAGE_SNAPSHOT_KIND[self.stage]
        ordered = sorted(snapshots, key=lambda s: s.kind != wanted)
        self.fields["snapshots"].choices = [
            (s.pk, f"#{s.pk} {s.kind}: {s.manifest.get('rows', 0)} rows, "
                   f"{s.created_at:%Y-%m-%d %H:%M}")
            for s in ordered
        ]  # fmt: skip
        models = list(project_training_models(project).order_by("name"))
        self.fields["base_model"].choices = [
            (m.name, m.name) for m in models if m.kind == ModelVersion.Kind.POLICY
        ]
        self.fields["base_model"].initial = (
            project.draft_model.name if project.draft_model else None
        )
        self.fields["reward_model"].choices = [("", "—")] + [
            (m.name, m.name) for m in models if m.kind == ModelVersion.Kind.REWARD
        ]
        self.hp_specs = hyperparameter_fields(self.stage)
        for spec in self.hp_specs:
            self.fields[HP_PREFIX + spec.name] = self._hp_field(spec)

    @staticmethod
    def _hp_field(spec) -> forms.Field:
        common = {"label": spec.name, "help_text": f"{spec.help}; {spec.allowed}"}
        if spec.kind == "bool":
            return forms.BooleanField(required=False, initial=spec.default, **common)
        if spec.kind == "choice":
            return forms.ChoiceField(
                choices=[(c, c) for c in spec.choices], initial=spec.default, **common
            )
        field_class = forms.IntegerField if spec.kind == "int" else forms.FloatField
        field = field_class(required=False, initial=spec.default, **common)
        field.widget.attrs["placeholder"] = str(spec.default)
        if spec.kind == "float":
            field.widget.attrs["step"] = "any"
        return field

    def hp_fields(self) -> list[forms.BoundField]:
        return [self[HP_PREFIX + spec.name] for spec in self.hp_specs]

    def hyperparameters(self) -> dict[str, Any]:
        """The values entered; an empty number field keeps the default."""
        values = {}
        for spec in self.hp_specs:
            value = self.cleaned_data.get(HP_PREFIX + spec.name)
            if value is None or value == "":
                continue
            values[spec.name] = value
        return values

    def add_service_errors(self, exc: ValidationError) -> None:
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc.messages)
            return
        for key, errors in exc.message_dict.items():
            if key.startswith("hyperparameters."):
                name = HP_PREFIX + key.split(".", 1)[1]
                field = name if name in self.fields else None
                self.add_error(field, errors if field else [f"{key}: {e}" for e in errors])
            elif key in self.SERVICE_FIELDS:
                self.add_error(key, errors)
            else:
                self.add_error(None, [f"{key}: {e}" for e in errors])


def _project(request: HttpRequest, slug: str) -> Project:
    return project_for_member(request.user, slug, capability="train")


@login_required
@require_GET
@vary_on_headers("HX-Request")
def training_runs(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    runs = list(project_runs(project)[:RECENT_LIMIT])
    context = {
        "project": project,
        "runs": runs,
        "polling": any(not run.is_finished for run in runs),
    }
    if request.htmx:
        return render(request, "trainer_bridge/_training_runs_table.html", context)
    return render(request, "trainer_bridge/training_runs.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
def training_run_new(request: HttpRequest, slug: str) -> HttpResponse:
    """The start form. A GET may carry the form's values (the stage changed: htmx, or the
    "Show this stage's settings" button without JavaScript): the form comes back with them and
    the new stage's hyper-parameters at their defaults."""
    project = _project(request, slug)
    if request.method == "POST":
        form = TrainingRunForm(request.POST, project=project, stage=request.POST.get("stage", ""))
        if form.is_valid():
            data = form.cleaned_data
            inputs = {
                "project": project,
                "user": request.user,
                "stage": data["stage"],
                "snapshots": data["snapshots"],
                "base_model": data["base_model"],
                "reward_model": data.get("reward_model") or None,
                "hyperparameters": form.hyperparameters(),
                "backend": data["backend"],
            }
            try:
                if data["idempotency_key"]:
                    start = training_run_start_once(
                        idempotency_key=data["idempotency_key"], **inputs
                    )
                    run, created = start.run, start.created
                else:  # a form posted by something other than this page
                    run, created = training_run_start(**inputs), True
            except ValidationError as exc:
                form.add_service_errors(exc)
            else:
                if created:
                    messages.success(request, f"Training run #{run.pk} is queued.")
                else:
                    messages.info(request, f"This form already started training run #{run.pk}.")
                return redirect("training-run", slug=project.slug, pk=run.pk)
    else:
        initial = {
            key: values if key == "snapshots" else values[-1]
            for key, values in request.GET.lists()
            if key in TrainingRunForm.SERVICE_FIELDS
        }
        form = TrainingRunForm(initial=initial, project=project, stage=request.GET.get("stage", ""))
    context = {"project": project, "form": form}
    if request.htmx and request.method == "GET":
        return render(request, "trainer_bridge/_training_run_form.html", context)
    return render(request, "trainer_bridge/training_run_new.html", context)


def _live_context(request: HttpRequest, run: TrainingRun) -> dict[str, Any]:
    evaluation = latest_reward_evaluation(run.result_model) if run.stage == "rm" else None
    evaluating = evaluation is not None and evaluation.state in (
        RewardEvaluation.State.QUEUED,
        RewardEvaluation.State.RUNNING,
    )
    project = run.project
    return {
        "project": project,
        "run": run,
        "series": run_metric_series(run),
        "latest": latest_metrics(run),
        "row_counts": [
            (name.replace("_", " "), n)
            for name, n in (run.rows or {}).items()
            if name != "dropped_too_long"  # said in a sentence of its own
        ],
        "evaluation": evaluation,
        "polling": not run.is_finished or evaluating,
        "can_manage": can(request.user, project, "manage"),
        "is_draft": run.result_model_id is not None
        and project.draft_model_id == run.result_model_id,
        "is_candidate": run.result_model_id is not None
        and project.candidate_models.filter(pk=run.result_model_id).exists(),
    }


@login_required
@require_GET
@vary_on_headers("HX-Request")
def training_run(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    run = training_run_for_member(request.user, pk, slug=slug)
    context = _live_context(request, run)
    if request.htmx:
        return render(request, LIVE_TEMPLATE, context)
    context["snapshots"] = list(run.snapshots.order_by("pk"))
    return render(request, "trainer_bridge/training_run.html", context)


@login_required
@require_POST
def training_run_cancel_view(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    run = training_run_for_member(request.user, pk, slug=slug)
    try:
        training_run_cancel(run=run, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Training run #{run.pk} is cancelled.")
    return redirect("training-run", slug=slug, pk=pk)


@login_required
@require_POST
def training_run_use(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    run = training_run_for_member(request.user, pk, slug=slug)
    use = request.POST.get("use", "")
    try:
        training_run_use_model(run=run, user=request.user, use=use)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        role = "draft model" if use == "draft" else "candidate model"
        messages.success(request, f"{run.result_model} is now the {role} of {run.project.name}.")
    return redirect("training-run", slug=slug, pk=pk)


@login_required
@require_POST
def training_run_evaluate(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    run = training_run_for_member(request.user, pk, slug=slug)
    try:
        reward_evaluation_request(run=run, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "The evaluation is queued.")
    return redirect("training-run", slug=slug, pk=pk)
