"""REST routes of exports, mounted under /api/v1/."""

from django.urls import path

from exports import apis

urlpatterns = [
    path(
        "projects/<slug:slug>/exports/",
        apis.ExportListCreateApi.as_view(),
        name="api-export-list",
    ),
    path("exports/<int:pk>/", apis.ExportDetailApi.as_view(), name="api-export-detail"),
    path("exports/<int:pk>/download", apis.ExportDownloadApi.as_view(), name="api-export-download"),
]
