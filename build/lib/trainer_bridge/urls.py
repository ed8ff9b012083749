"""Pages of the trainer bridge: the generations page and a request's live status; a project's
training runs, the form that starts one, and a run's live page with its actions."""

from django.urls import path

import annotations.urls_converters  # noqa: F401 (registers <id:...>)
from trainer_bridge import training_views, views

urlpatterns = [
    path("p/<slug:slug>/generations/", views.generations, name="generations"),
    path("generations/<int:pk>/status", views.generation_status, name="generation-status"),
    path("generations/<int:pk>/retry", views.generation_retry, name="generation-retry"),
    path("p/<slug:slug>/training/", training_views.training_runs, name="training-runs"),
    path("p/<slug:slug>/training/new", training_views.training_run_new, name="training-run-new"),
    path("p/<slug:slug>/training/<id:pk>/", training_views.training_run, name="training-run"),
    path(
        "p/<slug:slug>/training/<id:pk>/cancel",
        training_views.training_run_cancel_view,
        name="training-run-cancel",
    ),
    path(
        "p/<slug:slug>/training/<id:pk>/use",
        training_views.training_run_use,
        name="training-run-use",
    ),
    path(
        "p/<slug:slug>/training/<id:pk>/evaluate",
        training_views.training_run_evaluate,
        name="training-run-evaluate",
    ),
]
