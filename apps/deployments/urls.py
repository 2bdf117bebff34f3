from django.urls import path

from apps.deployments import views

app_name = "deployments"
urlpatterns = [
    path("", views.deployment_list, name="list"),
    path("new/<slug:slug>/", views.deploy, name="deploy"),
    path("<int:pk>/", views.deployment_detail, name="detail"),
    path("<int:pk>/settings/", views.deployment_settings, name="settings"),
    path("<int:pk>/documents/", views.deployment_documents, name="documents"),
    path("<int:pk>/<str:verb>/", views.deployment_operate, name="operate"),
    path("<int:pk>/manage/<str:verb>/", views.deployment_manage, name="manage"),
]
