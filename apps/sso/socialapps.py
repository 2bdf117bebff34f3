"""allauth ``SocialApp`` objects built at run time from the current schema's connections.

Nothing is stored in allauth's ``SocialApp`` table: a connection is the single source of truth, is
per organisation by construction (it lives in the tenant schema), and disabling or deleting it
takes effect on the next request.

The SAML security settings are explicit because allauth's defaults do not require any signature
(``want_assertion_signed`` and ``want_message_signed`` both default to False):

- ``strict``: True — with False python3-saml checks the signature and nothing else.
- ``want_assertion_signed``: True — the assertion (what we read) must carry a valid signature.
- ``want_message_signed``: False — most IdPs (Entra ID, Google) sign only the assertion by
  default; a signed Response is still verified when present.
- ``reject_deprecated_algorithm``: True — SHA-1 signatures and digests are refused.
- ``reject_idp_initiated_sso``: ``not connection.allow_idp_initiated``.
- ``want_attribute_statement``: False — an IdP that sends only a NameID still works.
- SP entity ID: allauth's default, the tenant's SP metadata URL on the host the request came to,
  ``https://<host>/accounts/saml/<slug>/metadata/``.
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.models import SocialApp

from apps.sso.models import Connection
from apps.sso.selectors import connections_enabled

SAML_PROVIDER = "saml"
OIDC_PROVIDER = "openid_connect"


def saml_settings(connection: Connection) -> dict[str, Any]:
    certificates = list(connection.saml_certificates)
    idp: dict[str, Any] = {
        "entity_id": connection.saml_entity_id,
        "sso_url": connection.saml_sso_url,
        "x509cert": certificates[0] if certificates else "",
        # Read by apps.sso.saml.auth.build_auth (rotation: any listed certificate may sign).
        "x509cert_multi": certificates,
    }
    if connection.saml_slo_url:
        idp["slo_url"] = connection.saml_slo_url
    return {
        "idp": idp,
        "attribute_mapping": {
            "email": connection.mapping("email"),
            "first_name": connection.mapping("first_name"),
            "last_name": connection.mapping("last_name"),
        },
        "advanced": {
            "strict": True,
            "want_assertion_signed": True,
            "want_message_signed": False,
            "reject_deprecated_algorithm": True,
            "reject_idp_initiated_sso": not connection.allow_idp_initiated,
            "want_attribute_statement": False,
            "want_name_id": True,
            "name_id_format": connection.saml_name_id_format,
            "authn_request_signed": False,
        },
    }


def oidc_settings(connection: Connection) -> dict[str, Any]:
    return {
        "server_url": connection.oidc_issuer,
        "scope": connection.oidc_scopes.split(),
        "oauth_pkce_enabled": True,
        "fetch_userinfo": True,
    }


def social_app_for(connection: Connection) -> SocialApp:
    if connection.protocol == Connection.Protocol.SAML:
        return SocialApp(
            provider=SAML_PROVIDER,
            provider_id=connection.slug,
            name=connection.display_name,
            client_id=connection.slug,
            settings=saml_settings(connection),
        )
    return SocialApp(
        provider=OIDC_PROVIDER,
        provider_id=connection.slug,
        name=connection.display_name,
        client_id=connection.oidc_client_id,
        secret=connection.oidc_client_secret,
        settings=oidc_settings(connection),
    )


def social_apps(provider: str | None = None, client_id: str | None = None) -> list[SocialApp]:
    """What ``SocialAccountAdapter.list_apps`` answers: ``provider`` may be a provider class id
    ("saml", "openid_connect") or a connection slug, as allauth looks up both."""
    apps = []
    for connection in connections_enabled():
        app = social_app_for(connection)
        if provider and provider not in (app.provider, app.provider_id):
            continue
        if client_id and client_id != app.client_id:
            continue
        apps.append(app)
    return apps
