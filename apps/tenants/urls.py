from django.urls import path

from apps.tenants import views

app_name = "tenants"
urlpatterns = [
    path("signup/", views.signup, name="signup"),
]
