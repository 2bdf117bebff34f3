from rest_framework.routers import SimpleRouter

from apps.deployments.api.views import DeploymentViewSet

router = SimpleRouter(trailing_slash=True)
router.register("deployments", DeploymentViewSet, basename="deployment")
urlpatterns = router.urls
