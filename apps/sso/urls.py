"""Tenant-admin pages for the organisation's identity-provider connections."""

from django.urls import path

from apps.sso import views

app_name = "sso"
urlpatterns = [
    path("", views.connections, name="connections"),
    path("new/saml/", views.connection_create_saml, name="connection-create-saml"),
    path("new/oidc/", views.connection_create_oidc, name="connection-create-oidc"),
    path("<int:pk>/", views.connection_edit, name="connection-edit"),
    path("<int:pk>/toggle/", views.connection_toggle, name="connection-toggle"),
    path("<int:pk>/delete/", views.connection_delete, name="connection-delete"),
]
