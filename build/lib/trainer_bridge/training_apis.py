"""REST endpoints of training runs: start and list a project's runs, read one with its metrics and
log, cancel it, put its model to use, evaluate a reward model; and the report endpoint a
command-backend job posts its events to with the run's token."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.access import project_for_member
from trainer_bridge.access import training_run_for_member
from trainer_bridge.models import RewardEvaluation, TrainingRun
from trainer_bridge.training_events import run_for_token
from trainer_bridge.training_runs import (
    idempotency_key_problem,
    reward_evaluation_request,
    training_run_cancel,
    training_run_report,
    training_run_start,
    training_run_start_once,
    training_run_use_model,
)
from trainer_bridge.training_selectors import (
    latest_metrics,
    latest_reward_evaluation,
    project_runs,
    run_metrics_after,
)

TAGS = ["training"]
METRICS_PAGE = 1000


def run_validation_error(exc: DjangoValidationError) -> serializers.ValidationError:
    """The service's errors as a 400: `hyperparameters.<name>` keys become
    `{"hyperparameters": {"<name>": [...]}}`, the others stay as they are."""
    if not hasattr(exc, "error_dict"):
        return serializers.ValidationError({"non_field_errors": exc.messages})
    errors: dict = {}
    for field, messages in exc.message_dict.items():
        if field.startswith("hyperparameters."):
            errors.setdefault("hyperparameters", {})[field.split(".", 1)[1]] = messages
        else:
            errors[field] = messages
    return serializers.ValidationError(errors)


class SignedInOrNotFound(BasePermission):
    """Anonymous callers get an outsider's 404 (not a 401): runs are not confirmed to exist."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise NotFound("No such project or training run.")
        return True


class EvaluationSerializer(serializers.Serializer):
    class RoundSerializer(serializers.Serializer):
        round = serializers.CharField(help_text="The models that wrote the sets' candidates.")
        sets = serializers.IntegerField()
        pairs = serializers.IntegerField()
        correct = serializers.IntegerField()
        accuracy = serializers.FloatField(allow_null=True)

        class Meta:
            ref_name = "RewardEvaluationRound"

    id = serializers.IntegerField()
    reward_model = serializers.CharField(source="reward_model.name")
    state = serializers.ChoiceField(choices=RewardEvaluation.State.choices)
    sets = serializers.IntegerField(help_text="Complete sets no training snapshot held.")
    pairs = serializers.IntegerField()
    correct = serializers.IntegerField(help_text="Pairs the model orders as the consensus does.")
    accuracy = serializers.FloatField(allow_null=True)
    sets_left_out = serializers.IntegerField(help_text="Sets left out: in a training snapshot.")
    rounds = RoundSerializer(many=True)
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "RewardEvaluation"


class ResultModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    source = serializers.CharField()
    parent = serializers.CharField(source="parent.name", allow_null=True)

    class Meta:
        ref_name = "TrainingResultModel"


class TrainingRunSummarySerializer(serializers.Serializer):
    """A run as the list shows it (no log, metrics or evaluation: one query for a page)."""

    id = serializers.IntegerField()
    url = serializers.SerializerMethodField(help_text="This run in the API.")
    page = serializers.SerializerMethodField(help_text="This run's page.")
    project = serializers.SlugField(source="project.slug")
    stage = serializers.ChoiceField(choices=TrainingRun.Stage.choices)
    state = serializers.ChoiceField(choices=TrainingRun.State.choices)
    backend = serializers.ChoiceField(choices=TrainingRun.Backend.choices)
    snapshots = serializers.SerializerMethodField(help_text="Ids of the input snapshots.")
    base_model = serializers.CharField(source="base_model.name")
    reward_model = serializers.CharField(source="reward_model.name", allow_null=True)
    hyperparameters = serializers.DictField(help_text="Every value, defaults included.")
    attempts = serializers.IntegerField()
    error = serializers.CharField(help_text="Why it failed; empty otherwise.")
    rows = serializers.DictField(help_text="Rows read: train, validation, dropped_too_long.")
    summary = serializers.DictField(help_text="Final figures the trainer reported.")
    result_model = ResultModelSerializer(allow_null=True)
    started_by = serializers.CharField(source="started_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "TrainingRunSummary"

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_url(self, obj: TrainingRun) -> str:
        return self._absolute(reverse("api-training-run-detail", args=[obj.pk]))

    def get_page(self, obj: TrainingRun) -> str:
        return self._absolute(reverse("training-run", args=[obj.project.slug, obj.pk]))

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_snapshots(self, obj: TrainingRun) -> list[int]:
        return sorted(s.pk for s in obj.snapshots.all())


class TrainingRunSerializer(TrainingRunSummarySerializer):
    """A run with its latest metrics, log tail and (RM runs) latest evaluation."""

    latest_metrics = serializers.SerializerMethodField(
        help_text="The last value of each metric, with its step."
    )
    log_tail = serializers.CharField()
    evaluation = serializers.SerializerMethodField(
        help_text="RM runs: the latest evaluation against fresh rankings."
    )

    class Meta:
        ref_name = "TrainingRun"

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_latest_metrics(self, obj: TrainingRun) -> dict:
        return latest_metrics(obj)

    @extend_schema_field(EvaluationSerializer(allow_null=True))
    def get_evaluation(self, obj: TrainingRun) -> dict | None:
        evaluation = latest_reward_evaluation(obj.result_model) if obj.stage == "rm" else None
        return EvaluationSerializer(evaluation).data if evaluation is not None else None


class TrainingRunListCreateApi(GenericAPIView):
    """A project's runs, newest first (GET), or a new run queued for its backend (POST).

    Engineers and leads; trainers get 403, everyone else 404. Every input is checked before
    anything is queued: a bad one gets a 400 naming it (`snapshots`, `base_model`,
    `reward_model`, `backend`, or `hyperparameters` with the name of the bad value inside).
    """

    permission_classes = [SignedInOrNotFound]
    parser_classes = [JSONParser]
    pagination_class = LimitOffsetPagination
    serializer_class = TrainingRunSummarySerializer

    class InputSerializer(serializers.Serializer):
        stage = serializers.ChoiceField(choices=TrainingRun.Stage.choices)
        snapshots = serializers.ListField(
            child=serializers.IntegerField(),
            min_length=1,
            help_text="Snapshot ids: sft snapshots for sft, preferences for rm, prompts for ppo.",
        )
        base_model = serializers.CharField(help_text="Name of the policy model to start from.")
        reward_model = serializers.CharField(
            required=False, allow_blank=True, help_text="ppo only: the reward model's name."
        )
        hyperparameters = serializers.DictField(
            required=False, help_text="Values that differ from the stage's defaults."
        )
        backend = serializers.ChoiceField(
            choices=TrainingRun.Backend.choices, required=False, help_text="Default: local."
        )

        class Meta:
            ref_name = "TrainingRunCreateInput"

    @extend_schema(
        responses=TrainingRunSummarySerializer(many=True),
        operation_id="training_run_list",
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug, capability="train")
        page = self.paginate_queryset(project_runs(project))
        for run in page:
            run.project = project
        body = TrainingRunSummarySerializer(page, many=True, context={"request": request}).data
        return self.get_paginated_response(body)

    @extend_schema(
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Optional; 1 to 100 letters, digits or `-_.:` (a UUID fits). The "
                "same key from the same user answers the run the first request started, with "
                "200 instead of 201, so a retry or a double click never starts two runs.",
            )
        ],
        responses={201: TrainingRunSerializer, 200: TrainingRunSerializer},
        operation_id="training_run_create",
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug, capability="train")
        key = request.headers.get("Idempotency-Key")
        if key is not None and (problem := idempotency_key_problem(key)):
            raise serializers.ValidationError({"Idempotency-Key": [problem]})
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        inputs = {
            "project": project,
            "user": request.user,
            "stage": data["stage"],
            "snapshots": data["snapshots"],
            "base_model": data["base_model"],
            "reward_model": data.get("reward_model") or None,
            "hyperparameters": data.get("hyperparameters"),
            "backend": data.get("backend"),
        }
        try:
            if key is None:
                run, created = training_run_start(**inputs), True
            else:
                start = training_run_start_once(idempotency_key=key, **inputs)
                run, created = start.run, start.created
        except DjangoValidationError as exc:
            error = run_validation_error(exc)
            if isinstance(error.detail, dict) and "idempotency_key" in error.detail:
                error.detail["Idempotency-Key"] = error.detail.pop("idempotency_key")
            raise error from exc
        body = TrainingRunSerializer(run, context={"request": request}).data
        return Response(
            body,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Location": body["url"]},
        )


class TrainingRunDetailApi(APIView):
    """One run: its state, rows, latest metrics, log tail, model and evaluation."""

    permission_classes = [SignedInOrNotFound]

    @extend_schema(responses=TrainingRunSerializer, operation_id="training_run_detail", tags=TAGS)
    def get(self, request: Request, pk: int) -> Response:
        run = training_run_for_member(request.user, pk)
        return Response(TrainingRunSerializer(run, context={"request": request}).data)


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    state = serializers.CharField()

    class Meta:
        ref_name = "TrainingRunConflict"


class TrainingRunCancelApi(APIView):
    """Cancel a queued or running run; 409 when it has already finished."""

    permission_classes = [SignedInOrNotFound]

    @extend_schema(
        request=None,
        responses={
            200: TrainingRunSerializer,
            409: OpenApiResponse(ConflictSerializer, description="The run has finished."),
        },
        operation_id="training_run_cancel",
        tags=TAGS,
    )
    def post(self, request: Request, pk: int) -> Response:
        run = training_run_for_member(request.user, pk)
        try:
            run = training_run_cancel(run=run, user=request.user)
        except DjangoValidationError as exc:
            return Response(
                {"detail": " ".join(exc.messages), "state": run.state},
                status=status.HTTP_409_CONFLICT,
            )
        run = training_run_for_member(request.user, pk)
        return Response(TrainingRunSerializer(run, context={"request": request}).data)


class MetricSerializer(serializers.Serializer):
    step = serializers.IntegerField()
    values = serializers.DictField(child=serializers.FloatField(allow_null=True))

    class Meta:
        ref_name = "TrainingMetric"


class MetricsPageSerializer(serializers.Serializer):
    metrics = MetricSerializer(many=True)
    next_after = serializers.IntegerField(
        allow_null=True, help_text="Pass as `after` for the next page; null at the end."
    )

    class Meta:
        ref_name = "TrainingMetricsPage"


class TrainingRunMetricsApi(APIView):
    """A run's metrics, one row per step in step order, a page at a time."""

    permission_classes = [SignedInOrNotFound]

    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="Only steps after this one."),
            OpenApiParameter("limit", int, description=f"Rows per page (at most {METRICS_PAGE})."),
        ],
        responses=MetricsPageSerializer,
        operation_id="training_run_metrics",
        tags=TAGS,
    )
    def get(self, request: Request, pk: int) -> Response:
        run = training_run_for_member(request.user, pk)
        try:
            after = request.query_params.get("after")
            after = int(after) if after not in (None, "") else None
        except ValueError:
            raise serializers.ValidationError({"after": ["A whole number."]}) from None
        try:
            limit = int(request.query_params.get("limit") or METRICS_PAGE)
        except ValueError:
            raise serializers.ValidationError({"limit": ["A whole number."]}) from None
        if not 1 <= limit <= METRICS_PAGE:
            raise serializers.ValidationError({"limit": [f"From 1 to {METRICS_PAGE}."]})
        rows = run_metrics_after(run, after=after, limit=limit)
        body = {
            "metrics": [{"step": m.step, "values": m.values} for m in rows],
            "next_after": rows[-1].step if len(rows) == limit else None,
        }
        return Response(body)


class LogSerializer(serializers.Serializer):
    state = serializers.CharField()
    log = serializers.CharField(help_text="The last lines of the run's log.")

    class Meta:
        ref_name = "TrainingRunLog"


class TrainingRunLogApi(APIView):
    """The tail of a run's log (the trainer's output and what the platform did)."""

    permission_classes = [SignedInOrNotFound]

    @extend_schema(responses=LogSerializer, operation_id="training_run_log", tags=TAGS)
    def get(self, request: Request, pk: int) -> Response:
        run = training_run_for_member(request.user, pk)
        return Response({"state": run.state, "log": run.log_tail})


class TrainingRunUseApi(APIView):
    """Make a succeeded run's policy the project's draft model or its candidate model (leads)."""

    permission_classes = [SignedInOrNotFound]
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        use = serializers.ChoiceField(
            choices=[("draft", "draft model"), ("candidate", "candidate model")]
        )

        class Meta:
            ref_name = "TrainingRunUseInput"

    class OutputSerializer(serializers.Serializer):
        draft_model = serializers.CharField(allow_null=True)
        candidate_models = serializers.ListField(child=serializers.CharField())

        class Meta:
            ref_name = "ProjectModels"

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer},
        operation_id="training_run_use",
        tags=TAGS,
    )
    def post(self, request: Request, pk: int) -> Response:
        run = training_run_for_member(request.user, pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        training_run_use_model(run=run, user=request.user, use=serializer.validated_data["use"])
        project = run.project
        project.refresh_from_db(fields=["draft_model"])
        return Response(
            {
                "draft_model": project.draft_model.name if project.draft_model else None,
                "candidate_models": sorted(project.candidate_models.values_list("name", flat=True)),
            }
        )


class TrainingRunEvaluateApi(APIView):
    """Score a succeeded RM run's model against the project's rankings none of its snapshots
    held (queued on the train queue); the result shows in the run's `evaluation`."""

    permission_classes = [SignedInOrNotFound]

    @extend_schema(
        request=None,
        responses={202: EvaluationSerializer},
        operation_id="training_run_evaluate",
        tags=TAGS,
    )
    def post(self, request: Request, pk: int) -> Response:
        run = training_run_for_member(request.user, pk)
        evaluation = reward_evaluation_request(run=run, user=request.user)
        return Response(EvaluationSerializer(evaluation).data, status=status.HTTP_202_ACCEPTED)


class ReportSerializer(serializers.Serializer):
    events = serializers.ListField(
        child=serializers.JSONField(),
        help_text="Events as the entry point writes them: started, metrics, log, finished.",
    )

    class Meta:
        ref_name = "TrainingRunReport"


class ReportResultSerializer(serializers.Serializer):
    accepted = serializers.BooleanField()
    state = serializers.CharField()
    detail = serializers.CharField(required=False)

    class Meta:
        ref_name = "TrainingRunReportResult"


class RunTokenAuthentication(BaseAuthentication):
    """`Authorization: RunToken <token>`: the token Parley gave the run's job (PARLEY_RUN_TOKEN).
    It authenticates reports for that one run and attempt, nothing else."""

    keyword = "RunToken"

    def authenticate(self, request):
        scheme, _, token = get_authorization_header(request).decode(errors="replace").partition(" ")
        if scheme != self.keyword:
            return None
        pk = (request.parser_context or {}).get("kwargs", {}).get("pk")
        run = run_for_token(pk, token.strip()) if pk is not None else None
        if run is None:
            raise AuthenticationFailed("No run with this id and token.")
        return AnonymousUser(), run

    def authenticate_header(self, request) -> str:
        return self.keyword


class RunTokenScheme(OpenApiAuthenticationExtension):
    target_class = RunTokenAuthentication
    name = "runToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`RunToken <token>`: the run's token, given to its job in "
            "PARLEY_RUN_TOKEN.",
        }


class HasRunToken(BasePermission):
    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, TrainingRun):
            raise NotAuthenticated("Report with the run's token: Authorization: RunToken <token>.")
        return True


class TrainingRunReportApi(APIView):
    """A command-backend job's events, authenticated by the run's token only.

    A `finished` success queues the storing and registration of the model. A run that no
    longer takes reports (cancelled, failed, given up) answers 409 with its state: the job
    should stop.
    """

    authentication_classes = [RunTokenAuthentication]
    permission_classes = [HasRunToken]
    # A job reports as often as it logs; the token (256 random bits) is its only credential.
    throttle_classes: list = []
    parser_classes = [JSONParser]

    @extend_schema(
        request=ReportSerializer,
        responses={
            200: ReportResultSerializer,
            400: OpenApiResponse(description="A bad event; the error names it (events[2].step)."),
            401: OpenApiResponse(description="No run with this id and token."),
            409: OpenApiResponse(ReportResultSerializer, description="The run is not running."),
        },
        operation_id="training_run_report",
        tags=TAGS,
    )
    def post(self, request: Request, pk: int) -> Response:
        run: TrainingRun = request.auth
        serializer = ReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            applied = training_run_report(run=run, events=serializer.validated_data["events"])
        except DjangoValidationError as exc:
            raise run_validation_error(exc) from exc
        if not applied.accepted:
            return Response(
                {
                    "accepted": False,
                    "state": applied.state,
                    "detail": f"Run {pk} is {applied.state}; it takes no more reports.",
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response({"accepted": True, "state": applied.state})
