"""REST endpoints for a project's members (leads): list, add by username or e-mail, change a
role, remove. The same services as the members page; refusals become 400s naming the field."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.access import project_for_member
from annotations.memberships import membership_add, membership_change_role
from annotations.models import Membership
from labelling.project_forms import MemberAddForm
from labelling.selectors import project_members
from labelling.services import member_remove


class MemberOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()
    created_at = serializers.DateTimeField()


class MemberAddInputSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=254, help_text="A username or an e-mail address.")
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberRoleInputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberRemovedSerializer(serializers.Serializer):
    tasks_returned = serializers.IntegerField()


class MemberListApi(APIView):
    @extend_schema(responses=MemberOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug, capability="manage")
        return Response(MemberOutputSerializer(project_members(project), many=True).data)

    @extend_schema(request=MemberAddInputSerializer, responses={201: MemberOutputSerializer})
    def post(self, request: Request, slug: str) -> Response:
        project = project_for_member(request.user, slug, capability="manage")
        data = MemberAddInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The page's lookup, so both doors find the same person for the same text.
        lookup = MemberAddForm({"who": data.validated_data["user"], "role": "trainer"})
        if not lookup.is_valid():
            return Response({"user": lookup.errors["who"]}, status=status.HTTP_400_BAD_REQUEST)
        membership = membership_add(
            project=project,
            actor=request.user,
            user=lookup.cleaned_data["who"],
            role=data.validated_data["role"],
        )
        return Response(MemberOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    @extend_schema(request=MemberRoleInputSerializer, responses=MemberOutputSerializer)
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        project = project_for_member(request.user, slug, capability="manage")
        membership = get_object_or_404(project.memberships.select_related("user"), pk=pk)
        data = MemberRoleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = membership_change_role(
            membership=membership, actor=request.user, role=data.validated_data["role"]
        )
        return Response(MemberOutputSerializer(membership).data)

    @extend_schema(responses=MemberRemovedSerializer)
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        """Remove a member; the tasks they hold go back to the pool, their work stays."""
        project = project_for_member(request.user, slug, capability="manage")
        membership = get_object_or_404(project.memberships, pk=pk)
        returned = member_remove(membership=membership, actor=request.user)
        return Response(MemberRemovedSerializer({"tasks_returned": returned}).data)
