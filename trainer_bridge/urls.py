"""Pages of the trainer bridge: the generations page and a request's live status."""

from django.urls import path

from trainer_bridge import views

urlpatterns = [
    path("p/<slug:slug>/generations/", views.generations, name="generations"),
    path("generations/<int:pk>/status", views.generation_status, name="generation-status"),
    path("generations/<int:pk>/retry", views.generation_retry, name="generation-retry"),
]
