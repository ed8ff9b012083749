"""Page URLs of the labelling app."""

from django.urls import path

import annotations.urls_converters  # noqa: F401 (registers <id:...>)
from labelling.views import (
    dashboard_agreement,
    dashboards,
    demonstrations,
    imports,
    pages,
    rankings,
    reviews,
)

urlpatterns = [
    # Every member: home, a project's page, the profile with the API token.
    path("", pages.home, name="home"),
    path("p/<slug:slug>/", pages.project_detail, name="project-detail"),
    path("accounts/profile/", pages.profile, name="profile"),
    path("accounts/profile/token/", pages.token_regenerate, name="token-regenerate"),
    # Leads: imports.
    path("p/<slug:slug>/import/", imports.prompt_import, name="prompt-import"),
    # Demonstrations.
    path(
        "p/<slug:slug>/demonstrations/next",
        demonstrations.demonstration_next,
        name="demonstration-next",
    ),
    path("demonstrations/<id:task_id>/", demonstrations.demonstration_page, name="demonstration"),
    path(
        "demonstrations/<id:task_id>/autosave",
        demonstrations.demonstration_autosave,
        name="demonstration-autosave",
    ),
    path(
        "demonstrations/<id:task_id>/draft",
        demonstrations.demonstration_draft,
        name="demonstration-draft",
    ),
    path(
        "demonstrations/<id:task_id>/draft/<id:pk>",
        demonstrations.demonstration_draft_status,
        name="demonstration-draft-status",
    ),
    path(
        "demonstrations/<id:task_id>/submit",
        demonstrations.demonstration_submit,
        name="demonstration-submit",
    ),
    path(
        "demonstrations/<id:task_id>/skip",
        demonstrations.demonstration_skip,
        name="demonstration-skip",
    ),
    # Comparisons and ranking.
    path("p/<slug:slug>/comparisons/new", rankings.comparison_new, name="comparison-new"),
    path("p/<slug:slug>/rank/", rankings.rank_next, name="rank-next"),
    path("tasks/<id:task_id>/rank", rankings.rank_task, name="rank-task"),
    path("tasks/<id:task_id>/rank/skip", rankings.rank_skip, name="rank-skip"),
    path("tasks/<id:task_id>/rank/autosave", rankings.rank_autosave, name="rank-autosave"),
    # Leads: the review queue of reported prompts.
    path("p/<slug:slug>/reviews/", reviews.prompt_reviews, name="prompt-reviews"),
    path(
        "p/<slug:slug>/reviews/<id:pk>/decide/",
        reviews.prompt_report_decision,
        name="prompt-report-decide",
    ),
    # Dashboards: the overview, trainers (a trainer's own page too) and length bias.
    path("p/<slug:slug>/dashboard/", dashboards.overview, name="dashboard-overview"),
    path("p/<slug:slug>/dashboard/trainers/", dashboards.trainers, name="dashboard-trainers"),
    path(
        "p/<slug:slug>/dashboard/trainers/<str:username>/",
        dashboards.trainer,
        name="dashboard-trainer",
    ),
    path("p/<slug:slug>/dashboard/length/", dashboards.length_bias, name="dashboard-length"),
    # Dashboards: agreement, one set's drill-down, model leaderboard, actions (dashboard_agreement).
    path(
        "p/<slug:slug>/dashboard/agreement/",
        dashboard_agreement.agreement_page,
        name="dashboard-agreement",
    ),
    path(
        "p/<slug:slug>/dashboard/sets/<id:pk>/",
        dashboard_agreement.set_page,
        name="dashboard-set",
    ),
    path(
        "p/<slug:slug>/dashboard/models/", dashboard_agreement.models_page, name="dashboard-models"
    ),
    path(
        "p/<slug:slug>/dashboard/actions/",
        dashboard_agreement.actions_page,
        name="dashboard-actions",
    ),
]
