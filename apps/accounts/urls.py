"""Workspace pages for managing people (tenant admins)."""

from django.urls import path

from apps.accounts import views

app_name = "accounts"
urlpatterns = [
    path("members/", views.member_list, name="members"),
]
