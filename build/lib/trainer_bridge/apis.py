"""REST endpoints for generation requests: create one, read its state and outputs, retry it."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.access import project_for_member
from annotations.models import Message, ModelVersion, Project
from annotations.selectors import thread_to
from trainer_bridge.access import generation_for_member
from trainer_bridge.generation import (
    generation_request_create,
    generation_request_from_messages,
    generation_request_retry,
)
from trainer_bridge.models import GenerationRequest
from trainer_bridge.selectors import project_policy_models, queue_position, request_outputs

TAGS = ["generations"]


def api_validation_error(
    exc: DjangoValidationError, *, renames: dict[str, str] | None = None
) -> serializers.ValidationError:
    """A service's ValidationError as a DRF 400, keeping its field names ("n", "params.top_p")."""
    if not hasattr(exc, "error_dict"):
        return serializers.ValidationError({"non_field_errors": exc.messages})
    renames = renames or {}
    errors: dict[str, list[str]] = {}
    for field, messages in exc.message_dict.items():
        errors.setdefault(renames.get(field, field), []).extend(messages)
    return serializers.ValidationError(errors)


class GenerationDetailApi(APIView):
    """A generation request's state, timings, context and outputs."""

    class OutputSerializer(serializers.Serializer):
        class TimingsSerializer(serializers.Serializer):
            queued_at = serializers.DateTimeField()
            started_at = serializers.DateTimeField(allow_null=True)
            finished_at = serializers.DateTimeField(allow_null=True)

            class Meta:
                ref_name = "GenerationTimings"

        class TurnSerializer(serializers.Serializer):
            role = serializers.CharField()
            content = serializers.CharField(source="text")

            class Meta:
                ref_name = "GenerationContextTurn"

        class GeneratedSerializer(serializers.Serializer):
            id = serializers.IntegerField(source="message_id")
            index = serializers.IntegerField(source="output_index")
            role = serializers.CharField(source="message.role")
            content = serializers.CharField(source="message.text")

            class Meta:
                ref_name = "GenerationOutput"

        id = serializers.IntegerField()
        project = serializers.SlugField(source="project.slug")
        purpose = serializers.ChoiceField(choices=GenerationRequest.Purpose.choices)
        model_version = serializers.CharField(source="model_version.name")
        n = serializers.IntegerField()
        params = serializers.DictField()
        state = serializers.ChoiceField(choices=GenerationRequest.State.choices)
        queue_position = serializers.SerializerMethodField(
            help_text="1 for the next request a worker takes; null unless queued."
        )
        attempts = serializers.IntegerField()
        error = serializers.CharField()
        timings = TimingsSerializer(source="*")
        prompt_tokens = serializers.IntegerField(allow_null=True)
        completion_tokens = serializers.IntegerField(allow_null=True)
        context = serializers.SerializerMethodField()
        outputs = serializers.SerializerMethodField()

        class Meta:
            ref_name = "Generation"

        def get_queue_position(self, obj: GenerationRequest) -> int | None:
            return queue_position(obj)

        @extend_schema_field(TurnSerializer(many=True))
        def get_context(self, obj: GenerationRequest) -> list[dict]:
            return self.TurnSerializer(thread_to(obj.context), many=True).data

        @extend_schema_field(GeneratedSerializer(many=True))
        def get_outputs(self, obj: GenerationRequest) -> list[dict]:
            return self.GeneratedSerializer(request_outputs(obj), many=True).data

    @extend_schema(responses=OutputSerializer, operation_id="generation_detail", tags=TAGS)
    def get(self, request: Request, pk: int) -> Response:
        generation = generation_for_member(request.user, pk)
        return Response(self.OutputSerializer(generation).data)


class GenerationCreateApi(APIView):
    """Ask for `n` replies after a context: new messages, or a message already in the project."""

    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        class TurnSerializer(serializers.Serializer):
            role = serializers.ChoiceField(choices=Message.Role.choices)
            content = serializers.CharField(trim_whitespace=False)

            class Meta:
                ref_name = "GenerationInputTurn"

        model_version = serializers.SlugRelatedField(
            slug_field="name",
            queryset=ModelVersion.objects.none(),  # the project's models: see __init__
            required=False,
            help_text="The name of one of the project's models (its draft model or a candidate "
            "model); defaults to the draft model for drafts, else the first candidate model.",
            # One answer whether the name is unknown or another project's: no existence oracle.
            error_messages={
                "does_not_exist": "{value} is not a model of this project.",
                "invalid": "Give a model name.",
            },
        )
        purpose = serializers.ChoiceField(
            choices=GenerationRequest.Purpose.choices, default=GenerationRequest.Purpose.CANDIDATES
        )
        n = serializers.IntegerField(min_value=1, default=1)
        params = serializers.DictField(required=False, help_text="Sampling parameters.")
        messages = TurnSerializer(many=True, required=False)
        context_message = serializers.IntegerField(
            required=False, help_text="Id of a user turn in this project to reply to."
        )

        class Meta:
            ref_name = "GenerationCreateInput"

        def __init__(self, *args, project: Project | None = None, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if project is not None:
                self.fields["model_version"].queryset = project_policy_models(project)

        def validate_messages(self, messages: list[dict]) -> list[dict]:
            if not messages:
                raise serializers.ValidationError("Give at least one message.")
            if messages[-1]["role"] != Message.Role.USER:
                raise serializers.ValidationError(
                    "The last message must be a user turn: replies follow a user turn."
                )
            return messages

        def validate(self, attrs: dict) -> dict:
            if ("messages" in attrs) == ("context_message" in attrs):
                raise serializers.ValidationError(
                    "Give either messages or context_message (one of them)."
                )
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={201: GenerationDetailApi.OutputSerializer},
        operation_id="generation_create",
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug, capability="generate")
        serializer = self.InputSerializer(data=request.data, project=project)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        model_version = data.get("model_version") or default_model_version(
            project=project, purpose=data["purpose"]
        )
        common = {
            "project": project,
            "model_version": model_version,
            "purpose": data["purpose"],
            "n": data["n"],
            "params": data.get("params"),
            "requested_by": request.user,
        }
        try:
            if "messages" in data:
                generation = generation_request_from_messages(
                    messages=[
                        {"role": m["role"], "content": m["content"]} for m in data["messages"]
                    ],
                    **common,
                )
            else:
                context = project_message(project=project, pk=data["context_message"])
                generation = generation_request_create(context=context, **common)
        except DjangoValidationError as exc:
            # The service names the context "context"; callers know it by the field they sent.
            field = "messages" if "messages" in data else "context_message"
            raise api_validation_error(exc, renames={"context": field}) from exc
        return Response(
            GenerationDetailApi.OutputSerializer(generation).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api-generation-detail", args=[generation.pk])},
        )


class GenerationRetryApi(APIView):
    """Queue a failed request again; 409 when it is not failed."""

    class ConflictSerializer(serializers.Serializer):
        detail = serializers.CharField()
        state = serializers.CharField()

        class Meta:
            ref_name = "GenerationRetryConflict"

    @extend_schema(
        request=None,
        responses={
            200: GenerationDetailApi.OutputSerializer,
            409: OpenApiResponse(ConflictSerializer, description="The request is not failed."),
        },
        operation_id="generation_retry",
        tags=TAGS,
    )
    def post(self, request: Request, pk: int) -> Response:
        generation = generation_for_member(request.user, pk, capability="generate")
        try:
            generation = generation_request_retry(request=generation)
        except DjangoValidationError as exc:
            return Response(
                {"detail": " ".join(exc.messages), "state": generation.state},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(GenerationDetailApi.OutputSerializer(generation).data)


def default_model_version(*, project: Project, purpose: str) -> ModelVersion:
    if purpose == GenerationRequest.Purpose.DRAFT:
        model, kind = project.draft_model, "draft model"
    else:
        model, kind = project.candidate_models.first(), "candidate models"
    if model is None:
        raise serializers.ValidationError(
            {"model_version": [f"Project {project.slug} has no {kind}; name a model_version."]}
        )
    return model


def project_message(*, project: Project, pk: int) -> Message:
    message = (
        Message.objects.select_related("conversation")
        .filter(pk=pk, conversation__project=project)
        .first()
    )
    if message is None:
        raise serializers.ValidationError(
            {"context_message": [f"No message {pk} in project {project.slug}."]}
        )
    return message
