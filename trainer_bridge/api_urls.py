"""REST routes of the trainer bridge, mounted under /api/v1/."""

from django.urls import path

from trainer_bridge import apis

urlpatterns = [
    path(
        "projects/<slug:slug>/generations/",
        apis.GenerationCreateApi.as_view(),
        name="api-generation-create",
    ),
    path("generations/<int:pk>/", apis.GenerationDetailApi.as_view(), name="api-generation-detail"),
    path(
        "generations/<int:pk>/retry", apis.GenerationRetryApi.as_view(), name="api-generation-retry"
    ),
]
