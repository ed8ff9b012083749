"""REST endpoints of the labelling app (thin: access checks from annotations.access; a service's
ValidationError or TaskConflict becomes a 400 or 409 in config.api.exception_handler)."""

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.access import LISTED_CAPABILITIES, listed_capabilities, project_for_member
from labelling.autosave import task_autosave
from labelling.claims import task_claim_next, task_describe, task_skip, task_submit
from labelling.leases import task_for_reader
from labelling.models import Task
from labelling.selectors import ProjectQueues, project_queues, projects_with_queues


class ProjectOutputSerializer(serializers.Serializer):
    slug = serializers.SlugField(source="project.slug")
    name = serializers.CharField(source="project.name")
    description = serializers.CharField(source="project.description")
    role = serializers.CharField(allow_null=True)
    capabilities = serializers.SerializerMethodField(
        help_text="What your role lets you do here: "
        + "; ".join(f"`{name}`: {what}" for name, what in LISTED_CAPABILITIES.items())
        + "."
    )
    languages = serializers.ListField(child=serializers.CharField(), source="project.languages")
    replies_per_set = serializers.IntegerField(source="project.replies_per_set")
    rankings_per_set = serializers.IntegerField(source="project.rankings_per_set")
    draft_model = serializers.CharField(source="project.draft_model", allow_null=True)
    open_tasks = serializers.DictField(child=serializers.IntegerField())
    my_tasks = serializers.IntegerField()
    prompts_in_pool = serializers.IntegerField()
    sets_collecting = serializers.IntegerField()

    def get_capabilities(self, obj: ProjectQueues) -> list[str]:
        return listed_capabilities(obj.role)


class ProjectListApi(APIView):
    """The projects the caller is a member of, with their role and open work."""

    @extend_schema(responses=ProjectOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        queues = projects_with_queues(user=request.user)
        return Response(ProjectOutputSerializer(queues, many=True).data)


class ProjectDetailApi(APIView):
    @extend_schema(responses=ProjectOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug)
        return Response(
            ProjectOutputSerializer(project_queues(user=request.user, project=project)).data
        )


class MeOutputSerializer(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.EmailField()
    is_staff = serializers.BooleanField()


class MeApi(APIView):
    """Who the token belongs to."""

    @extend_schema(responses=MeOutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeOutputSerializer(request.user).data)


class TaskNextInputSerializer(serializers.Serializer):
    kind = serializers.CharField()


class TaskOutputSerializer(serializers.Serializer):
    """A task as the API shows it; the kind adds its own fields (prompt, candidates, ...)."""

    id = serializers.IntegerField()
    kind = serializers.CharField()
    state = serializers.CharField()
    project = serializers.CharField()
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    autosave = serializers.DictField()
    result = serializers.DictField()

    def to_representation(self, task: Task) -> dict:
        return task_describe(task)


class TaskNextApi(APIView):
    """Claim the next task of a kind (or get back the one you hold); 204 when none is left."""

    @extend_schema(
        request=TaskNextInputSerializer, responses={200: TaskOutputSerializer, 204: None}
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug, capability="annotate")
        data = TaskNextInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = task_claim_next(project=project, user=request.user, kind=data.validated_data["kind"])
        if task is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(TaskOutputSerializer(task).data)


class TaskDetailApi(APIView):
    """A task the caller holds or submitted; anyone else's task is a 404, as if it did not exist
    (leads and engineers read submitted work in the data explorer)."""

    @extend_schema(responses=TaskOutputSerializer)
    def get(self, request: Request, task_id: int) -> Response:
        return Response(
            TaskOutputSerializer(task_for_reader(task_id=task_id, user=request.user)).data
        )


class TaskAutosaveInputSerializer(serializers.Serializer):
    data = serializers.DictField()


class TaskAutosaveApi(APIView):
    """Store work in progress on the server (renews the lease)."""

    @extend_schema(request=TaskAutosaveInputSerializer, responses=TaskOutputSerializer)
    def post(self, request: Request, task_id: int) -> Response:
        data = TaskAutosaveInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = task_autosave(task_id=task_id, user=request.user, data=data.validated_data["data"])
        return Response(TaskOutputSerializer(task).data)


class TaskSubmitApi(APIView):
    """Submit the task; submitting twice stores one result. The body depends on the kind, and
    messages in it are `{"role", "content"}`: a demonstration sends
    `{"turns": [{"role": "user", "content": ..., "draft_id": null}, ...]}`, a ranking
    `{"order": [[id], [id, id], ...], "flags": {...}, "all_bad": false,
    "rewrite": {"role": "assistant", "content": ...} or null, "time_spent_ms": ...}`."""

    @extend_schema(request=OpenApiTypes.OBJECT, responses=TaskOutputSerializer)
    def post(self, request: Request, task_id: int) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError("Send a JSON object.")
        task = task_submit(task_id=task_id, user=request.user, data=dict(request.data))
        return Response(TaskOutputSerializer(task).data)


class TaskSkipInputSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    report = serializers.CharField(required=False, allow_null=True, default=None)


class TaskSkipApi(APIView):
    """Pass on a task (optionally reporting its prompt); it goes back to the pool."""

    @extend_schema(request=TaskSkipInputSerializer, responses=TaskOutputSerializer)
    def post(self, request: Request, task_id: int) -> Response:
        data = TaskSkipInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        extra = {"report": data.validated_data["report"]} if data.validated_data["report"] else {}
        task = task_skip(
            task_id=task_id, user=request.user, reason=data.validated_data["reason"], **extra
        )
        return Response(TaskOutputSerializer(task).data)
