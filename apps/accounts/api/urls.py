from rest_framework.routers import SimpleRouter

from apps.accounts.api.members import InvitationViewSet, MemberViewSet
from apps.accounts.api.views import ApiKeyViewSet

router = SimpleRouter(trailing_slash=True)
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("members", MemberViewSet, basename="member")
router.register("invitations", InvitationViewSet, basename="invitation")
urlpatterns = router.urls
