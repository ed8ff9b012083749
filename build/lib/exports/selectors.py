"""Reads of exports: a project's snapshots, and one snapshot for a member allowed to see it."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from annotations.access import project_for_member
from annotations.models import Project
from exports.models import ExportSnapshot


def project_snapshots(*, project: Project) -> QuerySet[ExportSnapshot]:
    """The project's snapshots, newest first, with who asked for them."""
    return ExportSnapshot.objects.filter(project=project).select_related("created_by")


def snapshot_for_member(user: AbstractBaseUser | AnonymousUser, pk: int) -> ExportSnapshot:
    """The snapshot if `user` may export from its project: outsiders 404, trainers 403."""
    snapshot = ExportSnapshot.objects.select_related("project", "created_by").filter(pk=pk).first()
    if snapshot is None:
        raise Http404("No such export.")
    project = project_for_member(user, snapshot.project.slug, capability="export")
    snapshot.project = project
    return snapshot
