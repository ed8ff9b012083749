"""Root URLs: pages, the admin, the REST API under /api/v1/ with its schema and docs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

import exports.api_urls
import exports.urls
import labelling.api_urls
import labelling.urls
import trainer_bridge.api_urls
import trainer_bridge.urls

api_v1 = [
    path("", include(labelling.api_urls)),
    path("", include(trainer_bridge.api_urls)),
    path("", include(exports.api_urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script from a URL, not inline: the CSP allows no inline
    # scripts.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include(labelling.urls)),
    path("", include(trainer_bridge.urls)),
    path("", include(exports.urls)),
]
