"""REST endpoints of the labelling app (thin: access checks from annotations.access)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.access import project_for_member
from labelling.selectors import ProjectQueues, project_queues, projects_with_queues


class ProjectOutputSerializer(serializers.Serializer):
    slug = serializers.SlugField(source="project.slug")
    name = serializers.CharField(source="project.name")
    description = serializers.CharField(source="project.description")
    role = serializers.CharField(allow_null=True)
    capabilities = serializers.SerializerMethodField()
    languages = serializers.ListField(child=serializers.CharField(), source="project.languages")
    replies_per_set = serializers.IntegerField(source="project.replies_per_set")
    rankings_per_set = serializers.IntegerField(source="project.rankings_per_set")
    draft_model = serializers.CharField(source="project.draft_model", allow_null=True)
    open_tasks = serializers.DictField(child=serializers.IntegerField())
    my_tasks = serializers.IntegerField()
    prompts_in_pool = serializers.IntegerField()
    sets_collecting = serializers.IntegerField()

    def get_capabilities(self, obj: ProjectQueues) -> list[str]:
        return sorted(obj.capabilities)


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
