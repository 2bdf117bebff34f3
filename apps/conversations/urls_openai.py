"""The OpenAI-compatible API on an organisation's host: /v1/chat/completions and /v1/models."""

from django.urls import URLPattern, URLResolver, path, re_path

from apps.conversations import openai_api

urlpatterns: list[URLPattern | URLResolver] = [
    path("chat/completions", openai_api.chat_completions, name="openai-chat-completions"),
    path("models", openai_api.models, name="openai-models"),
    path("models/<str:model_id>", openai_api.model, name="openai-model"),
    # Anything else answers as OpenAI does, not with the product's own error format.
    re_path(r"^(?P<rest>.*)$", openai_api.unknown, name="openai-unknown"),
]
