"""The conversations API on an organisation's host (filled in by api/views.py)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
