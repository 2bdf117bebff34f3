"""The OpenAI-compatible API on an organisation's host: /v1/chat/completions and /v1/models."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
