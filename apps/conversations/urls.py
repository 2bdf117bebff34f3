"""Chat pages on an organisation's host."""

from django.urls import URLPattern, URLResolver, path

from apps.conversations import views

app_name = "conversations"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.chat_index, name="index"),
    path("<int:deployment_id>/", views.chat, name="deployment"),
    path("<int:deployment_id>/<int:conversation_id>/", views.chat, name="conversation"),
]
