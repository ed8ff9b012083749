from django.urls import path

import annotations.urls_converters  # noqa: F401 (registers <id:...>)
from labelling import apis, member_apis

urlpatterns = [
    path("me/", apis.MeApi.as_view(), name="api-me"),
    path("projects/", apis.ProjectListApi.as_view(), name="api-projects"),
    path("projects/<slug:slug>/", apis.ProjectDetailApi.as_view(), name="api-project-detail"),
    path("projects/<slug:slug>/tasks/next", apis.TaskNextApi.as_view(), name="api-task-next"),
    path("tasks/<id:task_id>/", apis.TaskDetailApi.as_view(), name="api-task-detail"),
    path("tasks/<id:task_id>/autosave", apis.TaskAutosaveApi.as_view(), name="api-task-autosave"),
    path("tasks/<id:task_id>/submit", apis.TaskSubmitApi.as_view(), name="api-task-submit"),
    path("tasks/<id:task_id>/skip", apis.TaskSkipApi.as_view(), name="api-task-skip"),
    # Leads: the project's members.
    path(
        "projects/<slug:slug>/members/",
        member_apis.MemberListApi.as_view(),
        name="api-project-members",
    ),
    path(
        "projects/<slug:slug>/members/<id:pk>/",
        member_apis.MemberDetailApi.as_view(),
        name="api-project-member",
    ),
]
