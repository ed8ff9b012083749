"""Admin pages for tasks."""

from django.contrib import admin

from labelling.models import Task, TaskSkip


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "state", "assignee", "lease_expires_at", "created_at"]
    list_filter = ["kind", "state", "project"]
    search_fields = ["assignee__username", "skip_reason"]
    raw_id_fields = ["assignee", "conversation", "message", "ranking_set"]


@admin.register(TaskSkip)
class TaskSkipAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "user", "reason", "created_at"]
    raw_id_fields = ["task", "user"]
