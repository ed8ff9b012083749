"""Admin pages for tasks."""

from django.contrib import admin

from labelling.models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "state", "assignee", "lease_expires_at", "created_at"]
    list_filter = ["kind", "state", "project"]
    search_fields = ["assignee__username", "skip_reason"]
    raw_id_fields = ["assignee", "conversation", "message", "ranking_set"]
