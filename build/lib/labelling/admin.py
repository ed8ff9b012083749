"""Admin pages for tasks, scoped like the core data to the projects a lead leads."""

from django.contrib import admin

from annotations.admin_scoping import ProjectScopedAdmin
from labelling.models import Task, TaskSkip


@admin.register(Task)
class TaskAdmin(ProjectScopedAdmin):
    list_display = ["id", "project", "kind", "state", "assignee", "lease_expires_at", "created_at"]
    list_filter = ["kind", "state", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["assignee__username", "skip_reason"]
    raw_id_fields = ["assignee", "conversation", "message", "ranking_set"]


@admin.register(TaskSkip)
class TaskSkipAdmin(ProjectScopedAdmin):
    project_path = "task__project"
    list_display = ["id", "task", "user", "reason", "created_at"]
    raw_id_fields = ["task", "user"]
