"""REST routes of exports, mounted under /api/v1/."""

from django.urls import path

import annotations.urls_converters  # noqa: F401 (registers <id:...>)
from exports import apis

urlpatterns = [
    path(
        "projects/<slug:slug>/exports/",
        apis.ExportListCreateApi.as_view(),
        name="api-export-list",
    ),
    path("exports/<id:pk>/", apis.ExportDetailApi.as_view(), name="api-export-detail"),
    path("exports/<id:pk>/download", apis.ExportDownloadApi.as_view(), name="api-export-download"),
]
