"""The test SAML IdP (tests/identity/saml_idp.py), checked against python3-saml acting as the SP.

python3-saml is the library under django-allauth's ``saml`` provider, so these tests also pin down
which of its checks reject which attack, and under which ``security`` settings. Each rejection
asserts the error python3-saml gives, so that a response rejected for an unrelated reason cannot
pass for a working check. No database, no network.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_Error
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from onelogin.saml2.xmlparser import DTDForbidden

from tests.identity.saml_idp import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    NAMEID_EMAIL,
    NAMEID_PERSISTENT,
    NS_DS,
    NS_SAML,
    RSA_SHA1,
    RSA_SHA256,
    RSA_SHA384,
    RSA_SHA512,
    SHA1,
    SHA256,
    SHA384,
    SHA512,
    STATUS_AUTHN_FAILED,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
    KeyPair,
    TestIdP,
    XswVariant,
    make_keypair,
    parse_authn_request,
    parse_sso_redirect,
    saml_time,
)

SP_HOST = "acme.example.test"
SP_ENTITY_ID = f"https://{SP_HOST}/accounts/saml/acme/metadata/"
ACS_PATH = "/accounts/saml/acme/acs/"
ACS_URL = f"https://{SP_HOST}{ACS_PATH}"
SLS_URL = f"https://{SP_HOST}/accounts/saml/acme/sls/"

ADA = "ada@acme.example"
MALLORY = "mallory@acme.example"
ADA_ATTRIBUTES: dict[str, list[str]] = {
    "email": [ADA],
    "firstName": ["Ada"],
    "lastName": ["Lovelace"],
    "groups": ["engineering", "admins"],
}

# The security settings the SP should run with.
RECOMMENDED: dict[str, Any] = {
    "wantAssertionsSigned": True,
    "wantMessagesSigned": False,
    "rejectDeprecatedAlgorithm": True,
}
# What allauth 65.21's build_saml_config() sets when SocialApp.settings["advanced"] is empty:
# note wantAssertionsSigned and wantMessagesSigned are both False.
ALLAUTH_DEFAULTS: dict[str, Any] = {
    "authnRequestsSigned": False,
    "digestAlgorithm": SHA256,
    "logoutRequestSigned": False,
    "logoutResponseSigned": False,
    "requestedAuthnContext": False,
    "signatureAlgorithm": RSA_SHA256,
    "signMetadata": False,
    "wantAssertionsEncrypted": False,
    "wantAssertionsSigned": False,
    "wantMessagesSigned": False,
    "nameIdEncrypted": False,
    "wantNameIdEncrypted": False,
    "allowSingleLabelDomains": False,
    "rejectDeprecatedAlgorithm": True,
    "wantNameId": False,
    "wantAttributeStatement": True,
    "allowRepeatAttributeName": True,
    "metadataValidUntil": None,
    "metadataCacheDuration": None,
}
PROFILES: dict[str, dict[str, Any]] = {
    "recommended": RECOMMENDED,
    "allauth-defaults": ALLAUTH_DEFAULTS,
}


@pytest.fixture(scope="module")
def idp() -> TestIdP:
    return TestIdP()


@pytest.fixture(scope="module")
def stranger_key() -> KeyPair:
    return make_keypair("Not the IdP")


def sp_settings(
    idp: TestIdP,
    *,
    strict: bool = True,
    idp_section: dict[str, Any] | None = None,
    security: dict[str, Any] | None = None,
    **overrides: Any,
) -> OneLogin_Saml2_Settings:
    """python3-saml settings for our SP trusting ``idp``; ``overrides`` go into ``security``."""
    return OneLogin_Saml2_Settings(
        {
            "strict": strict,
            "debug": False,
            "sp": {
                "entityId": SP_ENTITY_ID,
                "assertionConsumerService": {"url": ACS_URL, "binding": BINDING_HTTP_POST},
                "singleLogoutService": {"url": SLS_URL, "binding": BINDING_HTTP_REDIRECT},
                "NameIDFormat": NAMEID_EMAIL,
            },
            "idp": idp_section if idp_section is not None else idp.python3_saml_idp_settings(),
            "security": {**(RECOMMENDED if security is None else security), **overrides},
        }
    )


def request_data(url: str = ACS_URL, **post: str) -> dict[str, Any]:
    """The request dict python3-saml wants (as allauth's prepare_django_request builds it)."""
    parts = urlsplit(url)
    return {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.netloc,
        "script_name": "",
        "path_info": parts.path,
        "get_data": {},
        "post_data": post,
    }


@dataclass
class Outcome:
    valid: bool
    error: str
    """python3-saml's reason, "" when valid."""
    response: Any


def sp_check(
    idp: TestIdP,
    saml_response: str,
    *,
    request_id: str | None = None,
    received_at: str = ACS_URL,
    settings: OneLogin_Saml2_Settings | None = None,
    **security: Any,
) -> Outcome:
    """Validate a base64 SAMLResponse as our SP would."""
    response = OneLogin_Saml2_Response(settings or sp_settings(idp, **security), saml_response)
    valid = response.is_valid(request_data(received_at), request_id)
    return Outcome(valid=bool(valid), error=response.get_error() or "", response=response)


def good(idp: TestIdP, **kwargs: Any) -> str:
    options: dict[str, Any] = {
        "acs_url": ACS_URL,
        "audience": SP_ENTITY_ID,
        "name_id": ADA,
        "attributes": ADA_ATTRIBUTES,
    }
    options.update(kwargs)
    return idp.build_response(**options)


def decoded(saml_response: str) -> str:
    return base64.b64decode(saml_response).decode("utf-8")


def assert_rejected(outcome: Outcome, *fragments: str) -> None:
    assert not outcome.valid, "python3-saml accepted it"
    assert any(fragment in outcome.error for fragment in fragments), outcome.error


# --- The tool's own pieces --------------------------------------------------------------------


def test_keypair_has_matching_key_and_certificate_in_every_form(idp):
    keypair = idp.keypair
    certificate = x509.load_pem_x509_certificate(keypair.certificate_pem.encode())
    key = serialization.load_pem_private_key(keypair.private_key_pem.encode(), password=None)
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
    assert key.key_size == 2048
    body = "".join(keypair.certificate_pem.strip().splitlines()[1:-1])
    assert keypair.certificate_b64 == body
    assert "-----" not in keypair.certificate_b64
    assert keypair.sha256_fingerprint == OneLogin_Saml2_Utils.calculate_x509_fingerprint(
        keypair.certificate_pem, "sha256"
    )
    assert "PRIVATE KEY" not in repr(keypair)


def test_algorithm_and_uri_constants_are_python3_saml_s():
    c = OneLogin_Saml2_Constants
    assert (RSA_SHA1, RSA_SHA256, RSA_SHA384, RSA_SHA512) == (
        c.RSA_SHA1,
        c.RSA_SHA256,
        c.RSA_SHA384,
        c.RSA_SHA512,
    )
    assert (SHA1, SHA256, SHA384, SHA512) == (c.SHA1, c.SHA256, c.SHA384, c.SHA512)
    assert (BINDING_HTTP_POST, BINDING_HTTP_REDIRECT) == (
        c.BINDING_HTTP_POST,
        c.BINDING_HTTP_REDIRECT,
    )
    assert (NAMEID_EMAIL, STATUS_SUCCESS) == (c.NAMEID_EMAIL_ADDRESS, c.STATUS_SUCCESS)


def test_refuses_naive_datetimes_and_unknown_algorithms(idp):
    with pytest.raises(ValueError, match="timezone-aware"):
        saml_time(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="signature algorithm"):
        good(idp, signature_algorithm="http://www.w3.org/2000/09/xmldsig#dsa-sha1")
    with pytest.raises(TypeError, match="list of values"):
        good(idp, attributes={"email": ADA})


# --- A good response --------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_signed_response_to_a_request_is_valid_and_yields_subject_and_attributes(idp, profile):
    request_id = "ONELOGIN_0123456789abcdef"
    saml_response = good(idp, in_response_to=request_id, session_index="_session-1")

    outcome = sp_check(idp, saml_response, request_id=request_id, security=PROFILES[profile])

    assert outcome.valid, outcome.error
    response = outcome.response
    assert response.get_nameid() == ADA
    assert response.get_nameid_format() == NAMEID_EMAIL
    assert response.get_attributes() == ADA_ATTRIBUTES
    assert response.get_session_index() == "_session-1"
    assert response.get_in_response_to() == request_id
    assert response.get_issuers() == [idp.entity_id]


def test_idp_initiated_response_is_valid_without_in_response_to(idp):
    saml_response = good(idp, name_id="1234-5678", name_id_format=NAMEID_PERSISTENT)

    outcome = sp_check(idp, saml_response)

    assert outcome.valid, outcome.error
    assert outcome.response.get_in_response_to() is None
    assert outcome.response.get_nameid() == "1234-5678"
    assert "InResponseTo" not in decoded(saml_response)


@pytest.mark.parametrize(
    ("sign_assertion", "sign_response", "want_assertions", "want_messages", "error"),
    [
        (True, False, True, False, None),
        (False, True, False, True, None),
        (True, True, True, True, None),
        (False, True, True, False, "The Assertion of the Response is not signed"),
        (True, False, False, True, "The Message of the Response is not signed"),
    ],
)
def test_which_signatures_are_required_follows_want_settings(
    idp, sign_assertion, sign_response, want_assertions, want_messages, error
):
    saml_response = good(idp, sign_assertion=sign_assertion, sign_response=sign_response)

    outcome = sp_check(
        idp,
        saml_response,
        wantAssertionsSigned=want_assertions,
        wantMessagesSigned=want_messages,
    )

    if error is None:
        assert outcome.valid, outcome.error
        assert outcome.response.get_nameid() == ADA
    else:
        assert_rejected(outcome, error)


def test_session_not_on_or_after_is_carried_and_checked(idp):
    later = datetime.now(UTC) + timedelta(hours=8)
    outcome = sp_check(idp, good(idp, session_not_on_or_after=later))
    assert outcome.valid, outcome.error
    assert outcome.response.get_session_not_on_or_after() == int(later.timestamp())

    past = datetime.now(UTC) - timedelta(minutes=1)
    assert_rejected(sp_check(idp, good(idp, session_not_on_or_after=past)), "SessionNotOnOrAfter")


def test_error_response_is_rejected_with_its_status(idp):
    saml_response = idp.error_response(
        acs_url=ACS_URL, in_response_to="ONELOGIN_x", status_message="User cancelled"
    )
    xml = decoded(saml_response)
    assert STATUS_RESPONDER in xml
    assert STATUS_AUTHN_FAILED in xml

    outcome = sp_check(idp, saml_response, request_id="ONELOGIN_x")

    assert_rejected(outcome, "The status code of the Response was not Success, was Responder")
    assert "User cancelled" in outcome.error


# --- Attacks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "error"),
    [
        ("recommended", "The Assertion of the Response is not signed"),
        # Even with wantAssertionsSigned/wantMessagesSigned off, some signature is required.
        ("allauth-defaults", "No Signature found"),
    ],
)
def test_unsigned_response_is_rejected(idp, profile, error):
    saml_response = idp.unsigned_response(
        acs_url=ACS_URL, audience=SP_ENTITY_ID, name_id=ADA, attributes=ADA_ATTRIBUTES
    )
    assert "Signature" not in decoded(saml_response)

    assert_rejected(sp_check(idp, saml_response, security=PROFILES[profile]), error)


def test_unsigned_response_is_rejected_even_when_not_strict(idp):
    saml_response = idp.unsigned_response(
        acs_url=ACS_URL, audience=SP_ENTITY_ID, name_id=ADA, attributes=ADA_ATTRIBUTES
    )
    settings = sp_settings(idp, strict=False)
    assert_rejected(sp_check(idp, saml_response, settings=settings), "No Signature found")


def wrapped(idp: TestIdP, variant: XswVariant) -> str:
    return idp.wrapped_response(
        acs_url=ACS_URL,
        audience=SP_ENTITY_ID,
        signed_name_id=MALLORY,
        signed_attributes={"email": [MALLORY]},
        injected_name_id=ADA,
        injected_attributes={"email": [ADA]},
        variant=variant,
    )


def verify_like_a_naive_sp(saml_response: str, certificate_pem: str) -> tuple[Any, Any]:
    """Verify the document's one signature by resolving its Reference by ID anywhere in the
    document, as a naive SP would; returns the root and the element the signature covers."""
    root = etree.fromstring(base64.b64decode(saml_response))
    xmlsec.tree.add_ids(root, ["ID"])
    (signature,) = root.iter(f"{{{NS_DS}}}Signature")
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(
        certificate_pem, xmlsec.constants.KeyDataFormatCertPem, None
    )
    context.verify(signature)  # raises xmlsec.Error if it does not verify
    uri = signature.find(f".//{{{NS_DS}}}Reference").get("URI")
    (signed,) = root.xpath("//*[@ID=$id]", id=uri[1:])
    return root, signed


@pytest.mark.parametrize("variant", list(XswVariant))
def test_wrapped_response_is_a_real_attack(idp, variant):
    """The signature still verifies over what the IdP signed, and the injected subject sits
    outside it: an SP that verified "some signature" and then read "some assertion" would fall."""
    root, signed = verify_like_a_naive_sp(wrapped(idp, variant), idp.keypair.certificate_pem)

    name_id_tag = f"{{{NS_SAML}}}NameID"
    assert [node.text for node in signed.iter(name_id_tag)] == [MALLORY]
    outside = [
        node.text
        for node in root.iter(name_id_tag)
        if signed not in node.iterancestors() and node is not signed
    ]
    assert outside == [ADA]
    assert signed.tag.endswith("}Response" if variant.signs_response else "}Assertion")


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("variant", list(XswVariant))
def test_wrapped_response_is_rejected(idp, variant, profile):
    security = dict(PROFILES[profile])
    if variant.signs_response and profile == "recommended":
        security.update(wantAssertionsSigned=False, wantMessagesSigned=True)

    outcome = sp_check(idp, wrapped(idp, variant), security=security)

    # python3-saml's first line of defence: exactly one Assertion anywhere in the document.
    assert_rejected(outcome, "SAML Response must contain 1 assertion")


@pytest.mark.parametrize("sign_response", [False, True])
def test_tampered_attribute_is_rejected(idp, sign_response):
    saml_response = idp.tampered_attribute_response(
        acs_url=ACS_URL,
        audience=SP_ENTITY_ID,
        name_id=MALLORY,
        attributes={"email": [MALLORY], "groups": ["staff"]},
        attribute="email",
        new_value=ADA,
        sign_response=sign_response,
    )
    xml = decoded(saml_response)
    assert f">{ADA}</saml:AttributeValue>" in xml
    assert f">{MALLORY}</saml:AttributeValue>" not in xml

    outcome = sp_check(idp, saml_response, wantMessagesSigned=sign_response)

    assert_rejected(outcome, "Signature validation failed")


def test_tampered_name_id_is_rejected(idp):
    saml_response = idp.tampered_name_id_response(
        acs_url=ACS_URL,
        audience=SP_ENTITY_ID,
        name_id=MALLORY,
        new_name_id=ADA,
        attributes={"email": [MALLORY]},
    )
    assert f">{ADA}</saml:NameID>" in decoded(saml_response)

    assert_rejected(sp_check(idp, saml_response), "Signature validation failed")


@pytest.mark.parametrize("sign_response", [False, True])
def test_signed_with_another_key_is_rejected(idp, stranger_key, sign_response):
    saml_response = good(
        idp, key=stranger_key, sign_assertion=not sign_response, sign_response=sign_response
    )
    # The stranger's certificate travels in KeyInfo; python3-saml must ignore it.
    assert stranger_key.certificate_b64[:64] in decoded(saml_response).replace("\n", "")

    outcome = sp_check(
        idp,
        saml_response,
        wantAssertionsSigned=not sign_response,
        wantMessagesSigned=sign_response,
    )

    assert_rejected(outcome, "Signature validation failed")


def test_wrong_issuer_is_rejected(idp):
    saml_response = good(idp, issuer="https://evil.example.test/idp")
    assert_rejected(sp_check(idp, saml_response), "Invalid issuer")


def test_wrong_audience_is_rejected(idp):
    saml_response = good(idp, audience="https://other-sp.example.test/metadata")
    assert_rejected(sp_check(idp, saml_response), "is not a valid audience for this Response")


def test_missing_audience_restriction_is_accepted(idp):
    """Characterisation: python3-saml only checks an AudienceRestriction that is present."""
    outcome = sp_check(idp, good(idp, audience=None))
    assert outcome.valid, outcome.error
    assert "AudienceRestriction" not in decoded(good(idp, audience=None))


@pytest.mark.parametrize(
    ("window", "error"),
    [
        pytest.param(
            # Conditions expired beyond the drift allowance, SubjectConfirmationData still fine.
            {
                "not_on_or_after": timedelta(minutes=-10),
                "subject_not_on_or_after": timedelta(minutes=5),
            },
            "Could not validate timestamp: expired",
            id="expired",
        ),
        pytest.param(
            {"not_before": timedelta(minutes=10)},
            "Could not validate timestamp: not yet valid",
            id="not-yet-valid",
        ),
        pytest.param(
            # SubjectConfirmationData/@NotOnOrAfter gets no clock-drift allowance.
            {"subject_not_on_or_after": timedelta(minutes=-1)},
            "A valid SubjectConfirmation was not found",
            id="subject-confirmation-expired",
        ),
    ],
)
def test_responses_outside_their_validity_window_are_rejected(idp, window, error):
    now = datetime.now(UTC)
    options = {name: now + delta for name, delta in window.items()}
    assert_rejected(sp_check(idp, good(idp, **options)), error)


def test_conditions_get_five_minutes_of_clock_drift(idp):
    now = datetime.now(UTC)
    within_drift = good(
        idp,
        not_before=now + timedelta(minutes=3),
        not_on_or_after=now - timedelta(minutes=3),
        subject_not_on_or_after=now + timedelta(minutes=5),
    )
    outcome = sp_check(idp, within_drift)
    assert outcome.valid, outcome.error


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param(
            {"acs_url": "https://evil.example.test/accounts/saml/acme/acs/"},
            "The response was received at",
            id="destination-and-recipient",
        ),
        pytest.param(
            {"destination": "https://globex.example.test/accounts/saml/globex/acs/"},
            "The response was received at",
            id="destination-only",
        ),
        pytest.param(
            {"recipient": "https://globex.example.test/accounts/saml/globex/acs/"},
            "A valid SubjectConfirmation was not found",
            id="recipient-only",
        ),
    ],
)
def test_wrong_destination_or_recipient_is_rejected(idp, options, error):
    assert_rejected(sp_check(idp, good(idp, **options)), error)


def test_destination_is_checked_against_the_url_the_request_arrived_at(idp):
    """python3-saml compares Destination with the URL it rebuilds from request_data (https,
    http_host, script_name, path_info), not with the configured ACS URL: behind a TLS-terminating
    proxy Django must know the request was https (SECURE_PROXY_SSL_HEADER) and the right host."""
    saml_response = good(idp)
    as_http = ACS_URL.replace("https://", "http://")
    assert_rejected(
        sp_check(idp, saml_response, received_at=as_http), "The response was received at"
    )
    other_tenant = ACS_URL.replace(SP_HOST, "globex.example.test")
    assert_rejected(
        sp_check(idp, saml_response, received_at=other_tenant), "The response was received at"
    )


def test_destination_check_is_a_prefix_match_and_absence_is_accepted(idp):
    """Characterisation: Destination need only start with the receiving URL, and a response
    without Destination passes (an empty one does not)."""
    assert sp_check(idp, good(idp, destination=ACS_URL + "anything")).valid
    assert sp_check(idp, good(idp, omit_destination=True)).valid
    assert_rejected(sp_check(idp, good(idp, destination="")), "empty Destination")


@pytest.mark.parametrize(
    ("signature_algorithm", "digest_algorithm", "error"),
    [
        (RSA_SHA1, SHA1, "Deprecated signature algorithm"),
        (RSA_SHA1, SHA256, "Deprecated signature algorithm"),
        (RSA_SHA256, SHA1, "Deprecated digest algorithm"),
    ],
)
def test_sha1_signatures_are_rejected_when_deprecated_algorithms_are(
    idp, signature_algorithm, digest_algorithm, error
):
    saml_response = good(
        idp, signature_algorithm=signature_algorithm, digest_algorithm=digest_algorithm
    )
    xml = decoded(saml_response)
    assert f'SignatureMethod Algorithm="{signature_algorithm}"' in xml
    assert f'DigestMethod Algorithm="{digest_algorithm}"' in xml

    assert_rejected(sp_check(idp, saml_response, rejectDeprecatedAlgorithm=True), error)
    # The signature itself is genuine: python3-saml's default (False) accepts it.
    accepted = sp_check(idp, saml_response, rejectDeprecatedAlgorithm=False)
    assert accepted.valid, accepted.error


@pytest.mark.parametrize(
    ("signature_algorithm", "digest_algorithm"),
    [(RSA_SHA384, SHA384), (RSA_SHA512, SHA512), (RSA_SHA512, SHA256)],
)
def test_stronger_algorithms_are_accepted(idp, signature_algorithm, digest_algorithm):
    saml_response = good(
        idp, signature_algorithm=signature_algorithm, digest_algorithm=digest_algorithm
    )
    outcome = sp_check(idp, saml_response)
    assert outcome.valid, outcome.error


def test_doctype_with_entities_is_refused_before_anything_expands(idp):
    saml_response = idp.response_with_doctype(
        acs_url=ACS_URL, audience=SP_ENTITY_ID, name_id=ADA, attributes=ADA_ATTRIBUTES
    )
    xml = base64.b64decode(saml_response)
    assert b"<!DOCTYPE" in xml
    assert b"<!ENTITY lol3" in xml
    # The payload is live: a parser that resolves entities expands it (1,000 "lol"s here).
    permissive = etree.XMLParser(resolve_entities=True, no_network=True)
    expanded = etree.fromstring(xml, permissive)
    message = expanded.find(".//{urn:oasis:names:tc:SAML:2.0:protocol}StatusMessage")
    assert message.text == "lol" * 1000

    # python3-saml refuses the DTD while parsing, in the Response constructor: it never
    # reaches is_valid(), so this is an exception, not a False.
    with pytest.raises(DTDForbidden):
        OneLogin_Saml2_Response(sp_settings(idp), saml_response)


def test_malformed_xml_is_refused(idp):
    with pytest.raises(etree.XMLSyntaxError):
        OneLogin_Saml2_Response(sp_settings(idp), idp.malformed_response())


@pytest.mark.parametrize(
    ("make", "exception"),
    [
        pytest.param(
            lambda idp: idp.response_with_doctype(
                acs_url=ACS_URL, audience=SP_ENTITY_ID, name_id=ADA, attributes=ADA_ATTRIBUTES
            ),
            DTDForbidden,
            id="doctype",
        ),
        pytest.param(lambda idp: idp.malformed_response(), etree.XMLSyntaxError, id="malformed"),
    ],
)
def test_unparseable_responses_escape_process_response_as_non_saml_errors(idp, make, exception):
    """allauth's ACS view catches binascii.Error and OneLogin_Saml2_Error around
    process_response(); these are neither (DTDForbidden is a ValueError, XMLSyntaxError an
    lxml error), so an SP must handle them or answer 500."""
    auth = OneLogin_Saml2_Auth(request_data(SAMLResponse=make(idp)), old_settings=sp_settings(idp))
    with pytest.raises(exception) as caught:
        auth.process_response(request_id=None)
    assert not isinstance(caught.value, OneLogin_Saml2_Error)


# --- InResponseTo ---------------------------------------------------------------------------


def test_in_response_to_must_match_the_request_id_when_both_are_given(idp):
    saml_response = good(idp, in_response_to="ONELOGIN_someone-elses-request")
    assert_rejected(
        sp_check(idp, saml_response, request_id="ONELOGIN_mine"),
        "does not match the ID of the AuthNRequest",
    )


def test_in_response_to_is_not_checked_without_a_request_id(idp):
    """Characterisation: allauth calls process_response(request_id=None) and checks
    InResponseTo itself against the state it stashed under the AuthnRequest ID."""
    outcome = sp_check(idp, good(idp, in_response_to="ONELOGIN_anything"), request_id=None)
    assert outcome.valid, outcome.error
    assert outcome.response.get_in_response_to() == "ONELOGIN_anything"


def test_unsolicited_response_passes_even_when_a_request_id_is_given(idp):
    """Characterisation: a response without InResponseTo is accepted whatever request_id is;
    rejecting IdP-initiated sign-in is the SP's job (allauth: reject_idp_initiated_sso)."""
    outcome = sp_check(idp, good(idp), request_id="ONELOGIN_mine")
    assert outcome.valid, outcome.error


def test_python3_saml_keeps_no_replay_cache(idp):
    """Characterisation: the same response validates again and again within its window; only
    the SP's own one-time state (allauth's stashed InResponseTo state) stops a replay."""
    saml_response = good(idp, in_response_to="ONELOGIN_once")
    for _ in range(2):
        outcome = sp_check(idp, saml_response, request_id="ONELOGIN_once")
        assert outcome.valid, outcome.error


# --- strict=False ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"audience": "https://other-sp.example.test/metadata"}, id="audience"),
        pytest.param({"acs_url": "https://evil.example.test/acs/"}, id="destination"),
        pytest.param({"issuer": "https://evil.example.test/idp"}, id="issuer"),
        pytest.param(
            {"not_before": timedelta(days=-2), "not_on_or_after": timedelta(days=-1)},
            id="expired",
        ),
        pytest.param({"in_response_to": "ONELOGIN_other"}, id="in-response-to"),
    ],
)
def test_non_strict_mode_skips_every_check_but_the_signature(idp, options):
    """Characterisation: with strict False python3-saml verifies the signature and nothing else.
    allauth's advanced "strict" setting must stay True."""
    now = datetime.now(UTC)
    options = {
        name: now + value if isinstance(value, timedelta) else value
        for name, value in options.items()
    }
    settings = sp_settings(idp, strict=False)
    outcome = sp_check(idp, good(idp, **options), request_id="ONELOGIN_mine", settings=settings)
    assert outcome.valid, outcome.error


def test_expired_idp_certificate_is_still_trusted():
    """Characterisation: python3-saml pins the configured certificate and ignores its dates."""
    now = datetime.now(UTC)
    expired = make_keypair(
        "Expired IdP",
        not_valid_before=now - timedelta(days=400),
        not_valid_after=now - timedelta(days=35),
    )
    old_idp = TestIdP(keypair=expired)
    outcome = sp_check(old_idp, good(old_idp))
    assert outcome.valid, outcome.error


# --- Metadata -------------------------------------------------------------------------------


def test_metadata_is_schema_valid_and_parses_into_idp_settings(idp):
    metadata = idp.metadata_xml()
    schema_check = OneLogin_Saml2_XML.validate_xml(metadata, "saml-schema-metadata-2.0.xsd")
    assert not isinstance(schema_check, str), schema_check

    parsed = OneLogin_Saml2_IdPMetadataParser.parse(metadata)

    assert parsed["idp"] == {
        "entityId": idp.entity_id,
        "singleSignOnService": {"url": idp.sso_url, "binding": BINDING_HTTP_REDIRECT},
        "singleLogoutService": {"url": idp.slo_url, "binding": BINDING_HTTP_REDIRECT},
        "x509cert": idp.keypair.certificate_b64,
    }
    assert "security" not in parsed  # no WantAuthnRequestsSigned to leak into SP settings
    post = OneLogin_Saml2_IdPMetadataParser.parse(metadata, required_sso_binding=BINDING_HTTP_POST)
    assert post["idp"]["singleSignOnService"] == {"url": idp.sso_url, "binding": BINDING_HTTP_POST}

    # An SP configured from the metadata accepts the IdP's responses.
    outcome = sp_check(idp, good(idp), settings=sp_settings(idp, idp_section=parsed["idp"]))
    assert outcome.valid, outcome.error


def test_metadata_without_certificate(idp):
    metadata = idp.metadata_without_certificate()
    assert "X509Certificate" not in metadata
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(metadata)
    assert parsed["idp"]["entityId"] == idp.entity_id
    assert "x509cert" not in parsed["idp"]
    assert "x509certMulti" not in parsed["idp"]

    # With wantAssertionsSigned the settings themselves are refused...
    with pytest.raises(
        OneLogin_Saml2_Error, match="idp_cert_or_fingerprint_not_found_and_required"
    ):
        sp_settings(idp, idp_section=parsed["idp"])
    # ...with allauth's defaults they load, and every response then fails verification.
    settings = sp_settings(idp, idp_section=parsed["idp"], security=ALLAUTH_DEFAULTS)
    assert_rejected(sp_check(idp, good(idp), settings=settings), "Signature validation failed")


# --- AuthnRequest round trip ------------------------------------------------------------------


def test_authn_request_from_python3_saml_round_trips(idp):
    auth = OneLogin_Saml2_Auth(
        request_data(f"https://{SP_HOST}/accounts/saml/acme/login/"),
        old_settings=sp_settings(idp),
    )
    redirect_url = auth.login(return_to="https://acme.example.test/after-login")
    request_id = auth.get_last_request_id()

    sso = parse_sso_redirect(redirect_url)

    assert sso.url == idp.sso_url
    assert sso.relay_state == "https://acme.example.test/after-login"
    assert sso.sig_alg is None
    request = sso.authn_request
    assert request["id"] == request_id
    assert request["issuer"] == SP_ENTITY_ID
    assert request["acs_url"] == ACS_URL
    assert request["destination"] == idp.sso_url
    assert request["protocol_binding"] == BINDING_HTTP_POST
    assert request["name_id_format"] == NAMEID_EMAIL
    assert request["force_authn"] is False

    # The same, from the bare parameter value.
    query = urlsplit(redirect_url).query
    (raw,) = [value for key, value in parse_qsl(query) if key == "SAMLRequest"]
    assert parse_authn_request(raw)["id"] == request_id

    # The IdP answers it; the SP accepts the answer for that request and no other.
    saml_response = idp.response_for_request(request, name_id=ADA, attributes=ADA_ATTRIBUTES)
    outcome = sp_check(idp, saml_response, request_id=request_id)
    assert outcome.valid, outcome.error
    assert outcome.response.get_in_response_to() == request_id
    assert_rejected(
        sp_check(idp, saml_response, request_id="ONELOGIN_other"), "does not match the ID"
    )


def test_authn_request_in_post_binding_form_is_parsed_too(idp):
    auth = OneLogin_Saml2_Auth(request_data(), old_settings=sp_settings(idp))
    auth.login()
    xml = auth.get_last_request_xml()
    plain_base64 = base64.b64encode(xml.encode()).decode()
    assert parse_authn_request(plain_base64)["id"] == auth.get_last_request_id()
    with pytest.raises(ValueError, match="not a samlp:AuthnRequest"):
        parse_authn_request(base64.b64encode(b"<foo/>").decode())
