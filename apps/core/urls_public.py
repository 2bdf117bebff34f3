from django.urls import path

from apps.tenants import views

app_name = "core"
urlpatterns = [path("", views.landing, name="home")]
