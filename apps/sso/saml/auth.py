"""python3-saml, held strictly: failure reasons as codes, replay protection, audience required.

python3-saml (under allauth's ``saml`` provider) verifies signatures, XSW layouts, audience,
destination, recipient, issuer and validity windows, but leaves three gaps that this module
closes:

- It keeps no record of assertions it accepted: the same response validates again and again
  within its window. ``assertion_first_use`` records each accepted assertion ID in the cache
  (tenant-prefixed keys) until the assertion can no longer be valid, and refuses a second use.
- It accepts an assertion without ``AudienceRestriction``; we require one naming our SP.
- DTDs, entities and malformed XML raise exceptions allauth does not catch (they would be 500s);
  ``apps.sso.saml.views`` turns them into an error page and an audit event.

Clock skew: python3-saml allows ``ALLOWED_CLOCK_DRIFT`` (300 s) on ``Conditions`` NotBefore /
NotOnOrAfter and none on ``SubjectConfirmationData/@NotOnOrAfter``. The replay record is kept
until that NotOnOrAfter plus the same 300 s.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

from allauth.socialaccount.providers.saml.utils import build_saml_config, prepare_django_request
from django.core.cache import cache
from django.http import HttpRequest
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError
from onelogin.saml2.response import OneLogin_Saml2_Response

ALLOWED_CLOCK_DRIFT = OneLogin_Saml2_Constants.ALLOWED_CLOCK_DRIFT  # 300 s
_REPLAY_FALLBACK_SECONDS = 24 * 60 * 60

E = OneLogin_Saml2_ValidationError
REASONS: dict[int, str] = {
    E.NO_SIGNED_ASSERTION: "unsigned",
    E.NO_SIGNED_MESSAGE: "unsigned",
    E.NO_SIGNATURE_FOUND: "unsigned",
    E.INVALID_SIGNATURE: "signature_invalid",
    E.WRONG_NUMBER_OF_ASSERTIONS: "signature_wrapping",
    E.WRONG_SIGNED_ELEMENT: "signature_wrapping",
    E.ID_NOT_FOUND_IN_SIGNED_ELEMENT: "signature_wrapping",
    E.DUPLICATED_ID_IN_SIGNED_ELEMENTS: "signature_wrapping",
    E.INVALID_SIGNED_ELEMENT: "signature_wrapping",
    E.DUPLICATED_REFERENCE_IN_SIGNED_ELEMENTS: "signature_wrapping",
    E.UNEXPECTED_SIGNED_ELEMENTS: "signature_wrapping",
    E.WRONG_NUMBER_OF_SIGNATURES_IN_RESPONSE: "signature_wrapping",
    E.WRONG_NUMBER_OF_SIGNATURES_IN_ASSERTION: "signature_wrapping",
    E.WRONG_NUMBER_OF_SIGNATURES: "signature_wrapping",
    E.DEPRECATED_SIGNATURE_METHOD: "deprecated_algorithm",
    E.DEPRECATED_DIGEST_METHOD: "deprecated_algorithm",
    E.WRONG_AUDIENCE: "audience",
    E.ASSERTION_EXPIRED: "expired",
    E.RESPONSE_EXPIRED: "expired",
    E.SESSION_EXPIRED: "expired",
    E.ASSERTION_TOO_EARLY: "not_yet_valid",
    E.WRONG_SUBJECTCONFIRMATION: "subject_confirmation",
    E.WRONG_DESTINATION: "wrong_destination",
    E.EMPTY_DESTINATION: "wrong_destination",
    E.WRONG_ISSUER: "wrong_issuer",
    E.ISSUER_MULTIPLE_IN_RESPONSE: "wrong_issuer",
    E.ISSUER_NOT_FOUND_IN_ASSERTION: "wrong_issuer",
    E.WRONG_INRESPONSETO: "in_response_to",
    E.STATUS_CODE_IS_NOT_SUCCESS: "idp_error",
    E.INVALID_XML_FORMAT: "malformed_xml",
    E.UNSUPPORTED_SAML_VERSION: "malformed_xml",
    E.MISSING_ID: "malformed_xml",
    E.MISSING_STATUS: "malformed_xml",
    E.MISSING_STATUS_CODE: "malformed_xml",
    E.NO_NAMEID: "no_subject",
    E.EMPTY_NAMEID: "no_subject",
}


class _RecordingResponse(OneLogin_Saml2_Response):
    """Remembers the validation error's code (python3-saml keeps only its message)."""

    def __init__(self, auth: StrictAuth, settings: Any, response: str) -> None:
        auth.last_response_object = self
        self.error_code: int | None = None
        super().__init__(settings, response)

    def is_valid(
        self,
        request_data: dict[str, Any],
        request_id: str | None = None,
        raise_exceptions: bool = False,
    ) -> bool:
        try:
            return bool(super().is_valid(request_data, request_id, raise_exceptions=True))
        except OneLogin_Saml2_ValidationError as exc:
            self.error_code = exc.code
        except Exception:  # noqa: S110 - python3-saml already recorded the message in _error
            pass
        if raise_exceptions:
            raise OneLogin_Saml2_ValidationError(self._error or "invalid", self.error_code or 0)
        return False


class StrictAuth(OneLogin_Saml2_Auth):
    last_response_object: _RecordingResponse | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.response_class = functools.partial(_RecordingResponse, self)

    def failure_reason(self) -> str:
        response = self.last_response_object
        if response is not None and response.error_code is not None:
            return REASONS.get(response.error_code, "invalid_response")
        return "invalid_response"

    def audiences(self) -> list[str]:
        response = self.last_response_object
        return list(response.get_audiences()) if response is not None else []

    def issuer(self) -> str:
        response = self.last_response_object
        issuers = response.get_issuers() if response is not None else []
        return str(issuers[0]) if issuers else ""


def build_auth(request: HttpRequest, provider: Any) -> StrictAuth:
    """allauth's ``build_auth``, plus every configured signing certificate (rotation)."""
    config = build_saml_config(request, provider.app.settings, provider.app.client_id)
    certificates = provider.app.settings.get("idp", {}).get("x509cert_multi") or []
    if len(certificates) > 1:
        config["idp"]["x509certMulti"] = {"signing": list(certificates)}
    return StrictAuth(prepare_django_request(request), config)


def assertion_first_use(
    *, connection_slug: str, issuer: str, assertion_id: str, not_on_or_after: int | None
) -> bool:
    """Record an accepted assertion; False when it was seen before (a replay). Keys are prefixed
    with the tenant's schema by the cache's key function, and with the connection here."""
    digest = hashlib.sha256(f"{issuer}\n{assertion_id}".encode()).hexdigest()
    key = f"sso:saml:assertion:{connection_slug}:{digest}"
    now = time.time()
    if not_on_or_after:
        timeout = max(60, int(not_on_or_after - now) + ALLOWED_CLOCK_DRIFT)
    else:
        timeout = _REPLAY_FALLBACK_SECONDS
    return bool(cache.add(key, 1, timeout=min(timeout, _REPLAY_FALLBACK_SECONDS)))
