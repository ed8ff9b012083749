"""Pages of exports: a project's exports with the form for a new one, and one export's progress."""

from django.urls import path

import annotations.urls_converters  # noqa: F401 (registers <id:...>)
from exports import views

urlpatterns = [
    path("p/<slug:slug>/exports/", views.exports, name="exports"),
    path("p/<slug:slug>/exports/<id:pk>/", views.export_detail, name="export-detail"),
    path("p/<slug:slug>/exports/<id:pk>/download", views.export_download, name="export-download"),
]
