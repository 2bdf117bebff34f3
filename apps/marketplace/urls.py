"""Marketplace pages on an organisation's host: members browse what the catalog policy allows."""

from django.urls import path

from apps.accounts.decorators import permission_required
from apps.marketplace import views

app_name = "marketplace"
urlpatterns = [
    path("", permission_required("catalog:read")(views.browse), name="browse"),
    path("policy/", views.policy, name="policy"),
    path("reviews/<int:pk>/report/", views.review_report, name="review-report"),
    path("<slug:slug>/", permission_required("catalog:read")(views.detail), name="detail"),
    path("<slug:slug>/review/", views.review_save, name="review-save"),
    path("<slug:slug>/review/delete/", views.review_delete, name="review-delete"),
]
