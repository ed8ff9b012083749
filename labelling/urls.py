"""Page URLs of the labelling app, gathered from its view modules."""

from importlib import import_module

AREAS = ["pages", "imports", "demonstrations", "rankings", "reviews"]

urlpatterns = []
for area in AREAS:
    try:
        module = import_module(f"labelling.views.{area}")
    except ModuleNotFoundError as exc:
        if exc.name != f"labelling.views.{area}":
            raise
        continue
    urlpatterns += module.urlpatterns
