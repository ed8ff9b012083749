"""REST endpoints of exports: ask for one, list and read them, download their files."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.access import project_for_member
from exports.choice_docs import CHOICE_DOCS, applies_note
from exports.choices import KIND_LABELS, PairsFrom, PairStrategy, Ties
from exports.downloads import FILES, ExportNotReady, snapshot_download
from exports.models import ExportSnapshot
from exports.selectors import project_snapshots, snapshot_for_member
from exports.services import export_request

TAGS = ["exports"]
KIND_CHOICES = [(kind.value, label) for kind, label in KIND_LABELS.items()]


def _doc(name: str) -> str:
    return CHOICE_DOCS[name].help + applies_note(name)


class ExportChoicesSerializer(serializers.Serializer):
    """The choices of an export; every one is optional and has a default (for the schema: the
    values are checked by ExportChoices itself, so every door gives the same errors)."""

    since = serializers.DateField(required=False, allow_null=True, help_text=_doc("since"))
    until = serializers.DateField(required=False, allow_null=True, help_text=_doc("until"))
    languages = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=_doc("languages")
    )
    model_versions = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=_doc("model_versions")
    )
    min_agreement = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=1, help_text=_doc("min_agreement")
    )
    exclude_annotators = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=_doc("exclude_annotators")
    )
    exclude_flags = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=_doc("exclude_flags")
    )
    pairs_from = serializers.ChoiceField(
        choices=[p.value for p in PairsFrom], required=False, help_text=_doc("pairs_from")
    )
    pair_strategy = serializers.ChoiceField(
        choices=[p.value for p in PairStrategy], required=False, help_text=_doc("pair_strategy")
    )
    ties = serializers.ChoiceField(
        choices=[t.value for t in Ties], required=False, help_text=_doc("ties")
    )
    include_rewrites = serializers.BooleanField(required=False, help_text=_doc("include_rewrites"))
    length_balanced = serializers.BooleanField(required=False, help_text=_doc("length_balanced"))
    include_incomplete = serializers.BooleanField(
        required=False, help_text=_doc("include_incomplete")
    )
    include_cancelled = serializers.BooleanField(
        required=False, help_text=_doc("include_cancelled")
    )
    allow_model_turns = serializers.BooleanField(
        required=False, help_text=_doc("allow_model_turns")
    )
    best_path_only = serializers.BooleanField(required=False, help_text=_doc("best_path_only"))
    sources = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=_doc("sources")
    )
    exclude_sources = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=_doc("exclude_sources")
    )
    validation = serializers.FloatField(required=False, default=0.05, help_text=_doc("validation"))
    test = serializers.FloatField(required=False, default=0.0, help_text=_doc("test"))
    seed = serializers.IntegerField(required=False, default=0, help_text=_doc("seed"))
    gzip = serializers.BooleanField(required=False, default=False, help_text=_doc("gzip"))

    class Meta:
        ref_name = "ExportChoices"


@extend_schema_field(ExportChoicesSerializer)
class ChoicesField(serializers.DictField):
    """Any JSON object, passed on as is: ExportChoices checks it and names each bad field."""


class ExportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField(help_text="This export in the API.")
    project = serializers.SlugField(source="project.slug")
    kind = serializers.ChoiceField(choices=KIND_CHOICES)
    choices = ChoicesField(help_text="Every choice, defaults included.")
    state = serializers.ChoiceField(choices=ExportSnapshot.State.choices)
    rows_expected = serializers.IntegerField(
        allow_null=True, help_text="Rows the builder expects to write; null until counted."
    )
    rows_written = serializers.IntegerField()
    progress = serializers.FloatField(
        allow_null=True, help_text="Share of expected rows written, 0 to 1; null until counted."
    )
    error = serializers.CharField(help_text="Why it failed; empty otherwise.")
    attempts = serializers.IntegerField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    manifest = serializers.SerializerMethodField(
        help_text="Rows and sha256 per split, choices, what was left out; null until done."
    )
    downloads = serializers.SerializerMethodField(help_text="Download URL of each split.")
    files = serializers.SerializerMethodField(
        help_text="Download URLs of manifest.json and README.md."
    )

    class Meta:
        ref_name = "Export"

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_url(self, obj: ExportSnapshot) -> str:
        return self._absolute(reverse("api-export-detail", args=[obj.pk]))

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_manifest(self, obj: ExportSnapshot) -> dict | None:
        return obj.manifest if obj.state == ExportSnapshot.State.DONE else None

    @extend_schema_field(serializers.DictField(child=serializers.URLField()))
    def get_downloads(self, obj: ExportSnapshot) -> dict[str, str]:
        if obj.state != ExportSnapshot.State.DONE:
            return {}
        base = reverse("api-export-download", args=[obj.pk])
        return {split: self._absolute(f"{base}?split={split}") for split in obj.split_names()}

    @extend_schema_field(serializers.DictField(child=serializers.URLField()))
    def get_files(self, obj: ExportSnapshot) -> dict[str, str]:
        if obj.state != ExportSnapshot.State.DONE:
            return {}
        base = reverse("api-export-download", args=[obj.pk])
        return {name: self._absolute(f"{base}?file={name}") for name in FILES}


def choices_validation_error(exc: DjangoValidationError) -> serializers.ValidationError:
    """The service's errors as a 400, each choice named as sent: `choices.min_agreement`."""
    if not hasattr(exc, "error_dict"):
        return serializers.ValidationError({"non_field_errors": exc.messages})
    errors: dict[str, list[str]] = {}
    for field, messages in exc.message_dict.items():
        name = field if field in ("kind", "choices") else f"choices.{field}"
        errors.setdefault(name, []).extend(messages)
    return serializers.ValidationError(errors)


class ExportConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    state = serializers.CharField()

    class Meta:
        ref_name = "ExportNotReady"


class SignedInOrNotFound(BasePermission):
    """Anonymous callers get the 404 an outsider gets (not a 401): exports of a project are
    not even confirmed to exist to someone who is not a member."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise NotFound("No such project or export.")
        return True


class ExportListCreateApi(GenericAPIView):
    """A project's exports, newest first (GET), or a new one queued for a worker (POST).

    Members who may export (leads, engineers); other members get 403, everyone else 404.
    """

    permission_classes = [SignedInOrNotFound]
    parser_classes = [JSONParser]
    pagination_class = LimitOffsetPagination
    serializer_class = ExportOutputSerializer

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=KIND_CHOICES)
        choices = ChoicesField(required=False, help_text="Choices that differ from the defaults.")

        class Meta:
            ref_name = "ExportCreateInput"

    @extend_schema(
        responses=ExportOutputSerializer(many=True), operation_id="export_list", tags=TAGS
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug, capability="export")
        page = self.paginate_queryset(project_snapshots(project=project))
        for snapshot in page:
            snapshot.project = project
        serializer = ExportOutputSerializer(page, many=True, context={"request": request})
        return self.get_paginated_response(serializer.data)

    @extend_schema(
        request=InputSerializer,
        responses={201: ExportOutputSerializer},
        operation_id="export_create",
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug, capability="export")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            snapshot = export_request(
                project=project,
                user=request.user,
                kind=data["kind"],
                choices=data.get("choices"),
            )
        except DjangoValidationError as exc:
            raise choices_validation_error(exc) from exc
        body = ExportOutputSerializer(snapshot, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


class ExportDetailApi(APIView):
    """One export: its state and progress while a worker builds it; manifest and download URLs
    once done; the error if it failed."""

    permission_classes = [SignedInOrNotFound]

    @extend_schema(responses=ExportOutputSerializer, operation_id="export_detail", tags=TAGS)
    def get(self, request: Request, pk: int) -> Response:
        snapshot = snapshot_for_member(request.user, pk)
        return Response(ExportOutputSerializer(snapshot, context={"request": request}).data)


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """A download answers with the file's own type whatever the client accepts; only errors go
    through a renderer (JSON)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ExportDownloadApi(APIView):
    """One file of a finished export, streamed: a split's JSONL (or .jsonl.gz), manifest.json or
    README.md. 409 while the export is not done."""

    permission_classes = [SignedInOrNotFound]
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("split", str, description="A split: train, validation or test."),
            OpenApiParameter("file", str, enum=list(FILES), description="Instead of a split."),
        ],
        responses={
            (200, "application/jsonl"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The split's rows, one JSON object a line."
            ),
            (200, "application/gzip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The same, gzipped (a gzip export)."
            ),
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="manifest.json"
            ),
            (200, "text/markdown"): OpenApiResponse(
                OpenApiTypes.STR, description="README.md, the dataset card."
            ),
            400: OpenApiResponse(description="No such split or file; the error names which."),
            409: OpenApiResponse(ExportConflictSerializer, description="Not done (yet)."),
        },
        operation_id="export_download",
        tags=TAGS,
    )
    def get(self, request: Request, pk: int):
        snapshot = snapshot_for_member(request.user, pk)
        try:
            return snapshot_download(
                snapshot,
                split=request.query_params.get("split"),
                file=request.query_params.get("file"),
            )
        except ExportNotReady as exc:
            return Response(
                {"detail": exc.message, "state": exc.state}, status=status.HTTP_409_CONFLICT
            )
