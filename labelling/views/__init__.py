"""Pages of the labelling app, one module per area; each module lists its own `urlpatterns`."""
