"""Workspace pages for managing people (tenant admins) and joining by invitation."""

from django.urls import path

from apps.accounts import views

app_name = "accounts"
urlpatterns = [
    path("members/", views.member_list, name="members"),
    path("security/", views.security_policy, name="security"),
    path("api-keys/", views.api_keys, name="api-keys"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke_page, name="api-key-revoke"),
    path("members/<int:pk>/<slug:verb>/", views.member_action, name="member-action"),
    path("invitations/", views.invitation_create, name="invitation-create"),
    path("invitations/<int:pk>/revoke/", views.invitation_revoke, name="invitation-revoke"),
    path("invitations/accept/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
