"""Chat pages on an organisation's host."""

from django.urls import URLPattern, URLResolver

app_name = "conversations"
urlpatterns: list[URLPattern | URLResolver] = []
