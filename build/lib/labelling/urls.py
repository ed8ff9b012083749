"""Page URLs of the labelling app."""

from django.urls import path

import annotations.urls_converters  # noqa: F401 (registers <id:...>)
from labelling.views import (
    dashboard_agreement,
    dashboards,
    demonstrations,
    explorer,
    imports,
    members,
    pages,
    project_settings,
    rankings,
    reviews,
    work,
)

urlpatterns = [
    # Every member: home, a project's page, the profile with the API token.
    path("", pages.home, name="home"),
    path("p/<slug:slug>/", pages.project_detail, name="project-detail"),
    path("accounts/profile/", pages.profile, name="profile"),
    path("accounts/profile/token/", pages.token_regenerate, name="token-regenerate"),
    # Trainers: their home in a project (progress, queues, recent work).
    path("p/<slug:slug>/work/", work.trainer_home_page, name="trainer-home"),
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
        "demonstrations/<id:task_id>/preview",
        demonstrations.demonstration_preview,
        name="demonstration-preview",
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
    # Leads and engineers: the data explorer (leads also exclude from exports there).
    path("p/<slug:slug>/explore/", explorer.explore_conversations, name="explore-conversations"),
    path(
        "p/<slug:slug>/explore/conversations/<id:pk>/",
        explorer.explore_conversation,
        name="explore-conversation",
    ),
    path("p/<slug:slug>/explore/sets/", explorer.explore_sets, name="explore-sets"),
    path("p/<slug:slug>/explore/sets/<id:pk>/", explorer.explore_set, name="explore-set"),
    path(
        "p/<slug:slug>/explore/messages/<id:pk>/exclusion",
        explorer.message_exclusion,
        name="explore-message-exclusion",
    ),
    path(
        "p/<slug:slug>/explore/rankings/<id:pk>/exclusion",
        explorer.ranking_exclusion,
        name="explore-ranking-exclusion",
    ),
    # Leads: the review queue of reported prompts.
    path("p/<slug:slug>/reviews/", reviews.prompt_reviews, name="prompt-reviews"),
    path(
        "p/<slug:slug>/reviews/<id:pk>/decide/",
        reviews.prompt_report_decision,
        name="prompt-report-decide",
    ),
    # Staff and leads: the project console (settings, label schema, sampling, members, log).
    path("projects/new/", project_settings.project_new, name="project-new"),
    path("p/<slug:slug>/settings/", project_settings.project_settings, name="project-settings"),
    path(
        "p/<slug:slug>/settings/preview",
        project_settings.guidelines_preview,
        name="guidelines-preview",
    ),
    path("p/<slug:slug>/settings/labels/", project_settings.label_schema, name="label-schema"),
    path(
        "p/<slug:slug>/settings/sampling/",
        project_settings.sampling_settings,
        name="sampling-settings",
    ),
    path("p/<slug:slug>/settings/log/", project_settings.audit_page, name="project-log"),
    path("p/<slug:slug>/members/", members.members, name="members"),
    path("p/<slug:slug>/members/<id:pk>/role", members.member_role, name="member-role"),
    path("p/<slug:slug>/members/<id:pk>/remove", members.member_remove_view, name="member-remove"),
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
