"""allauth's SAML provider, with our strict python3-saml handling and our views (URLs unchanged:
``/accounts/saml/<slug>/{login,acs,acs/finish,sls,metadata}/``). Selected through
``SOCIALACCOUNT_PROVIDERS["saml"]["provider_class"]``, allauth's documented extension point."""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.providers.saml.provider import SAMLProvider
from django.http import HttpRequest, HttpResponseRedirect


class TenantSAMLProvider(SAMLProvider):
    package = "apps.sso.saml"  # allauth mounts apps/sso/saml/urls.py instead of its own

    def redirect(
        self,
        request: HttpRequest,
        process: Any,
        next_url: str | None = None,
        data: Any = None,
        **kwargs: Any,
    ) -> HttpResponseRedirect:
        from apps.sso.saml.auth import build_auth

        auth = build_auth(request, self)
        redirect = auth.login(return_to="")
        self.stash_redirect_state(
            request, process, next_url, data, state_id=auth.get_last_request_id(), **kwargs
        )
        return HttpResponseRedirect(redirect)
