"""REST routes of the trainer bridge, mounted under /api/v1/."""

from django.urls import path

import annotations.urls_converters  # noqa: F401 (registers <id:...>)
from trainer_bridge import apis, training_apis

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
    path(
        "projects/<slug:slug>/training-runs/",
        training_apis.TrainingRunListCreateApi.as_view(),
        name="api-training-run-list",
    ),
    path(
        "training-runs/<id:pk>/",
        training_apis.TrainingRunDetailApi.as_view(),
        name="api-training-run-detail",
    ),
    path(
        "training-runs/<id:pk>/cancel",
        training_apis.TrainingRunCancelApi.as_view(),
        name="api-training-run-cancel",
    ),
    path(
        "training-runs/<id:pk>/metrics",
        training_apis.TrainingRunMetricsApi.as_view(),
        name="api-training-run-metrics",
    ),
    path(
        "training-runs/<id:pk>/log",
        training_apis.TrainingRunLogApi.as_view(),
        name="api-training-run-log",
    ),
    path(
        "training-runs/<id:pk>/use",
        training_apis.TrainingRunUseApi.as_view(),
        name="api-training-run-use",
    ),
    path(
        "training-runs/<id:pk>/evaluate",
        training_apis.TrainingRunEvaluateApi.as_view(),
        name="api-training-run-evaluate",
    ),
    path(
        "training-runs/<id:pk>/report/",
        training_apis.TrainingRunReportApi.as_view(),
        name="api-training-run-report",
    ),
]
