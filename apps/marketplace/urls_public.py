"""Marketplace pages on the public site: the public catalog, open to anyone."""

from django.urls import path

from apps.marketplace import views

app_name = "marketplace"
urlpatterns = [
    path("", views.browse, name="browse"),
    path("<slug:slug>/", views.detail, name="detail"),
]
