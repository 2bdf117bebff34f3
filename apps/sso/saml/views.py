"""The end of a SAML sign-in (the browser comes here from allauth's ACS view, which only stashes
the POSTed response): validate strictly, refuse replays and IdP-initiated sign-ins unless allowed,
and turn every failure — including XML that python3-saml refuses with an exception — into an
error page and an audit event (``apps.accounts.adapter.SocialAccountAdapter.on_authentication_error``).
"""

from __future__ import annotations

import binascii
import logging
from typing import Any

from allauth.account.internal.decorators import login_not_required
from allauth.core.internal import httpkit
from allauth.socialaccount.helpers import complete_social_login, render_authentication_error
from allauth.socialaccount.internal import statekit
from allauth.socialaccount.providers.base.constants import AuthProcess
from allauth.socialaccount.providers.saml.utils import decode_relay_state
from allauth.socialaccount.providers.saml.views import SAMLViewMixin
from allauth.socialaccount.sessions import LoginSession
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from lxml import etree
from onelogin.saml2.errors import OneLogin_Saml2_Error
from onelogin.saml2.xmlparser import DTDForbidden, EntitiesForbidden, NotSupportedError

from apps.sso.saml.auth import StrictAuth, assertion_first_use, build_auth
from apps.sso.selectors import connection_enabled_by_slug

logger = logging.getLogger(__name__)


def _fail(request: HttpRequest, provider: Any, reason: str, detail: str = "") -> HttpResponse:
    logger.warning("SAML sign-in refused: %s", reason)
    return render_authentication_error(
        request,
        provider,
        extra_context={"sso_reason": reason, "sso_method": "saml", "sso_detail": detail[:300]},
    )


@method_decorator(login_not_required, name="dispatch")
class FinishACSView(SAMLViewMixin, View):
    def dispatch(self, request: HttpRequest, organization_slug: str) -> HttpResponse:
        provider = self.get_provider(organization_slug)
        connection = connection_enabled_by_slug(slug=organization_slug)
        acs_session = LoginSession(request, "saml_acs_session", "saml-acs-session")
        stored = acs_session.store.get("request")
        acs_request = httpkit.deserialize_request(stored, HttpRequest()) if stored else None
        acs_session.delete()
        if acs_request is None or connection is None:
            return _fail(request, provider, "missing_response")

        auth: StrictAuth | None = None
        try:
            auth = build_auth(acs_request, provider)
            auth.process_response(request_id=None)
        except (DTDForbidden, EntitiesForbidden, NotSupportedError):
            return _fail(request, provider, "dtd_forbidden")
        except (etree.XMLSyntaxError, binascii.Error, UnicodeError, ValueError):
            return _fail(request, provider, "malformed_xml")
        except OneLogin_Saml2_Error as exc:
            return _fail(request, provider, "invalid_response", str(exc))
        if auth.get_errors():
            return _fail(
                request, provider, auth.failure_reason(), auth.get_last_error_reason() or ""
            )
        if not auth.is_authenticated():
            return _fail(request, provider, "not_authenticated")
        # python3-saml accepts an assertion without AudienceRestriction; we do not.
        sp_entity_id = auth.get_settings().get_sp_data()["entityId"]
        if sp_entity_id not in auth.audiences():
            return _fail(request, provider, "audience")
        if not assertion_first_use(
            connection_slug=connection.slug,
            issuer=auth.issuer(),
            assertion_id=str(auth.get_last_assertion_id()),
            not_on_or_after=auth.get_last_assertion_not_on_or_after(),
        ):
            return _fail(request, provider, "replay")

        login = provider.sociallogin_from_response(request, auth)
        state_id = auth.get_last_response_in_response_to()
        if state_id:
            # SP-initiated: the request must have been made from this browser, for this
            # connection, and not used yet.
            state = statekit.unstash_state(request, provider_id=provider.sub_id, state_id=state_id)
            if state is None:
                return _fail(request, provider, "unknown_request")
            login.state = state
        else:
            if not connection.allow_idp_initiated:
                return _fail(request, provider, "idp_initiated")
            login.state["process"] = AuthProcess.LOGIN
            next_url = decode_relay_state(acs_request.POST.get("RelayState"))
            if next_url:
                login.state["next"] = next_url
        request._agentfactory_sso = "saml"  # type: ignore[attr-defined]
        return complete_social_login(request, login)


finish_acs = FinishACSView.as_view()
