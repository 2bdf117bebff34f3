from django.urls import path

from apps.core.api import views

urlpatterns = [path("tenant/", views.current_tenant, name="api-current-tenant")]
