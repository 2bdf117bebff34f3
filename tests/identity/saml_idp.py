"""A SAML 2.0 Identity Provider for tests: real keys, real signed XML, and the usual attacks.

Everything happens in-process; nothing touches the network. The IdP signs with python3-saml's
own signer (``OneLogin_Saml2_Utils.add_sign``, i.e. xmlsec with exclusive C14N and an enveloped
signature placed right after the signed element's ``Issuer``), so whatever it signs verifies with
python3-saml, the library under django-allauth's ``saml`` provider.

A typical SP-initiated sign-in in a test::

    idp = TestIdP()
    # configure the SP (allauth SocialApp settings["idp"]) with idp.allauth_idp_settings()
    redirect = client.get(login_url)                    # the SP sends the browser to the IdP
    sso = parse_sso_redirect(redirect["Location"])      # what the IdP received
    saml_response = idp.response_for_request(
        sso.authn_request, name_id="ada@acme.example", attributes={"email": ["ada@acme.example"]}
    )
    client.post(acs_url, {"SAMLResponse": saml_response, "RelayState": sso.relay_state or ""})

IdP-initiated: ``idp.build_response(acs_url=..., audience=sp_entity_id, name_id=...)`` with no
``in_response_to``.

Attacks, each a base64 ``SAMLResponse`` ready to post: :meth:`TestIdP.unsigned_response`,
:meth:`TestIdP.wrapped_response` (XML Signature Wrapping, see :class:`XswVariant`),
:meth:`TestIdP.tampered_attribute_response`, :meth:`TestIdP.tampered_name_id_response`,
:meth:`TestIdP.response_with_doctype` (entity expansion), :meth:`TestIdP.malformed_response`;
signing with another key is ``build_response(key=make_keypair(...))``, deprecated algorithms are
``build_response(signature_algorithm=RSA_SHA1, digest_algorithm=SHA1)``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import enum
import hashlib
import secrets
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict, Unpack
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils

# --- Namespaces and URIs --------------------------------------------------------------------

NS_SAMLP: Final = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML: Final = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_MD: Final = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS: Final = "http://www.w3.org/2000/09/xmldsig#"
NS_XS: Final = "http://www.w3.org/2001/XMLSchema"
NS_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"

RSA_SHA1: Final = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
SHA1: Final = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256: Final = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384: Final = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512: Final = "http://www.w3.org/2001/04/xmlenc#sha512"
# add_sign silently falls back to SHA-256 for an algorithm it does not know; refuse those instead.
_SIGNATURE_ALGORITHMS: Final = frozenset({RSA_SHA1, RSA_SHA256, RSA_SHA384, RSA_SHA512})
_DIGEST_ALGORITHMS: Final = frozenset({SHA1, SHA256, SHA384, SHA512})

BINDING_HTTP_POST: Final = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
BINDING_HTTP_REDIRECT: Final = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"

NAMEID_EMAIL: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_PERSISTENT: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_TRANSIENT: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
NAMEID_UNSPECIFIED: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"

STATUS_SUCCESS: Final = "urn:oasis:names:tc:SAML:2.0:status:Success"
STATUS_REQUESTER: Final = "urn:oasis:names:tc:SAML:2.0:status:Requester"
STATUS_RESPONDER: Final = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_AUTHN_FAILED: Final = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
STATUS_NO_PASSIVE: Final = "urn:oasis:names:tc:SAML:2.0:status:NoPassive"

AC_PASSWORD_PROTECTED_TRANSPORT: Final = (
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
)
CM_BEARER: Final = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
_ATTRNAME_BASIC: Final = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
_ATTRNAME_URI: Final = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"

DEFAULT_ENTITY_ID: Final = "https://idp.example.test/metadata"
DEFAULT_SSO_URL: Final = "https://idp.example.test/sso"
DEFAULT_SLO_URL: Final = "https://idp.example.test/slo"


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def _parse(xml: bytes | str) -> Any:
    """Parse without ever resolving entities, loading a DTD or touching the network."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(xml.encode() if isinstance(xml, str) else xml, parser)


def _serialize(element: Any) -> bytes:
    return bytes(etree.tostring(element))


def _b64(xml: bytes) -> str:
    return base64.b64encode(xml).decode("ascii")


def new_id() -> str:
    """A fresh SAML ID: an NCName ("_" and 40 hex digits), as IdPs generate them."""
    return "_" + secrets.token_hex(20)


def saml_time(moment: datetime) -> str:
    """A timezone-aware datetime as a SAML ``xs:dateTime`` in UTC, e.g. ``2026-01-31T12:00:00Z``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"SAML times must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """An RSA private key and its self-signed X.509 certificate, in the forms SAML tools want."""

    common_name: str
    private_key_pem: str = field(repr=False)
    """PKCS#8 PEM ("BEGIN PRIVATE KEY"), unencrypted."""
    certificate_pem: str = field(repr=False)
    """The certificate as PEM with header lines."""
    certificate_b64: str = field(repr=False)
    """The base64 DER body of the certificate on one line, without header lines: what
    python3-saml's ``idp.x509cert`` and allauth's ``settings["idp"]["x509cert"]`` expect, and what
    goes into ``ds:X509Certificate``."""

    @property
    def sha256_fingerprint(self) -> str:
        """Lower-case hex SHA-256 of the DER certificate, no colons (python3-saml's format)."""
        return hashlib.sha256(base64.b64decode(self.certificate_b64)).hexdigest()


def make_keypair(
    common_name: str = "Test IdP",
    *,
    key_size: int = 2048,
    not_valid_before: datetime | None = None,
    not_valid_after: datetime | None = None,
) -> KeyPair:
    """Generate an RSA key (2048 bits by default) and a self-signed SHA-256 certificate for it.

    The certificate is valid from a day ago for a year unless ``not_valid_before`` /
    ``not_valid_after`` (timezone-aware) say otherwise, e.g. to make an already expired one.
    Generating a 2048-bit key takes tens of milliseconds: share key pairs between tests.
    """
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_valid_before or now - timedelta(days=1))
        .not_valid_after(not_valid_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    cert_b64 = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
    return KeyPair(
        common_name=common_name,
        private_key_pem=key_pem,
        certificate_pem=cert_pem,
        certificate_b64=cert_b64,
    )


# --- What the SP sends ----------------------------------------------------------------------


class AuthnRequestInfo(TypedDict):
    """The parts of a ``samlp:AuthnRequest`` an IdP acts on."""

    id: str
    issuer: str | None
    destination: str | None
    acs_url: str | None
    """``AssertionConsumerServiceURL`` (None when the SP asked by index or relies on metadata)."""
    protocol_binding: str | None
    issue_instant: str | None
    name_id_format: str | None
    """``NameIDPolicy/@Format`` if the SP asked for one."""
    force_authn: bool
    is_passive: bool
    xml: str
    """The whole decoded request, for assertions this dict does not cover."""


@dataclass(frozen=True)
class SsoRedirect:
    """An HTTP-Redirect binding URL as the browser brings it to the IdP's SSO endpoint."""

    url: str
    """The endpoint, without the query."""
    authn_request: AuthnRequestInfo
    relay_state: str | None
    sig_alg: str | None
    """``SigAlg`` when the SP signs its requests (then ``signature`` is set too)."""
    signature: str | None


def _decode_saml_request(saml_request: str) -> bytes:
    try:
        raw = base64.b64decode(saml_request, validate=False)
    except binascii.Error as error:
        raise ValueError(f"SAMLRequest is not base64: {error}") from error
    try:
        return zlib.decompress(raw, -15)  # HTTP-Redirect binding: raw DEFLATE, no zlib header
    except zlib.error:
        return raw  # HTTP-POST binding: plain base64


def parse_authn_request(saml_request: str) -> AuthnRequestInfo:
    """Decode a ``SAMLRequest`` parameter value (already URL-decoded) into its useful fields.

    Accepts the HTTP-Redirect binding (base64 of raw DEFLATE) and, as a fallback, the HTTP-POST
    binding (plain base64). Raises ``ValueError`` if it is not an AuthnRequest.
    """
    xml = _decode_saml_request(saml_request)
    root = _parse(xml)
    if root.tag != _q(NS_SAMLP, "AuthnRequest"):
        raise ValueError(f"not a samlp:AuthnRequest but {root.tag}")
    issuer = root.find(_q(NS_SAML, "Issuer"))
    policy = root.find(_q(NS_SAMLP, "NameIDPolicy"))
    return AuthnRequestInfo(
        id=root.get("ID"),
        issuer=issuer.text.strip() if issuer is not None and issuer.text else None,
        destination=root.get("Destination"),
        acs_url=root.get("AssertionConsumerServiceURL"),
        protocol_binding=root.get("ProtocolBinding"),
        issue_instant=root.get("IssueInstant"),
        name_id_format=policy.get("Format") if policy is not None else None,
        force_authn=root.get("ForceAuthn") in ("true", "1"),
        is_passive=root.get("IsPassive") in ("true", "1"),
        xml=xml.decode("utf-8"),
    )


def parse_sso_redirect(url: str) -> SsoRedirect:
    """Split an SP's redirect to the IdP (e.g. a ``Location`` header) into request and RelayState."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    saml_request = one("SAMLRequest")
    if saml_request is None:
        raise ValueError(f"no SAMLRequest in {url!r}")
    return SsoRedirect(
        url=parts._replace(query="", fragment="").geturl(),
        authn_request=parse_authn_request(saml_request),
        relay_state=one("RelayState"),
        sig_alg=one("SigAlg"),
        signature=one("Signature"),
    )


# --- Building and signing responses ---------------------------------------------------------


class MessageOptions(TypedDict, total=False):
    """Optional settings of a response, shared by :meth:`TestIdP.build_response` and the attack
    builders; see ``build_response`` for what each means."""

    in_response_to: str | None
    name_id_format: str
    not_before: datetime
    not_on_or_after: datetime
    subject_not_on_or_after: datetime
    session_not_on_or_after: datetime | None
    session_index: str
    authn_context: str
    issue_instant: datetime
    assertion_id: str
    response_id: str
    issuer: str
    destination: str | None
    omit_destination: bool
    recipient: str
    status_message: str | None


class ResponseOptions(MessageOptions, total=False):
    """:class:`MessageOptions` plus the assertion's attributes."""

    attributes: Mapping[str, Sequence[str]] | None


@dataclass(frozen=True)
class _Envelope:
    """Everything about a response but its subject, with defaults resolved."""

    issuer: str
    audience: str | None
    in_response_to: str | None
    destination: str | None
    recipient: str
    not_before: datetime
    not_on_or_after: datetime
    subject_not_on_or_after: datetime
    session_not_on_or_after: datetime | None
    session_index: str
    authn_context: str
    issue_instant: datetime
    name_id_format: str
    response_id: str
    status_message: str | None


def _sign(element: Any, keypair: KeyPair, signature_algorithm: str, digest_algorithm: str) -> Any:
    """Sign an Assertion or Response with python3-saml's signer; returns the signed element.

    add_sign signs the parent of the first ``saml:Issuer`` it finds and inserts the signature
    right after that Issuer, which is where the schema wants it.
    """
    if signature_algorithm not in _SIGNATURE_ALGORITHMS:
        raise ValueError(f"unsupported signature algorithm {signature_algorithm!r}")
    if digest_algorithm not in _DIGEST_ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {digest_algorithm!r}")
    signed = OneLogin_Saml2_Utils.add_sign(
        _serialize(element),
        keypair.private_key_pem,
        keypair.certificate_pem,
        sign_algorithm=signature_algorithm,
        digest_algorithm=digest_algorithm,
    )
    return _parse(signed)


def _signature_of(element: Any) -> Any:
    signature = element.find(_q(NS_DS, "Signature"))
    if signature is None:
        raise ValueError(f"{element.tag} is not signed")
    return signature


def _without_signature(element: Any) -> Any:
    """A copy of a signed element without its enveloped signature: the exact content the
    signature's digest covers (the enveloped-signature transform removes it the same way)."""
    clone = copy.deepcopy(element)
    clone.remove(_signature_of(clone))
    return clone


class XswVariant(enum.StrEnum):
    """XML Signature Wrapping layouts (numbering as in SAML Raider, after Somorovsky et al.,
    "On Breaking SAML", 2012).

    In every variant the one ``ds:Signature`` still verifies, by ID, over the element the IdP
    really signed (the signed assertion, or for the ``RESPONSE_*`` variants the signed response),
    while an unsigned assertion with the attacker's subject sits where a careless SP reads. The
    injected elements get fresh IDs, so ID lookup finds the signed original.

    Left out: the layouts that put the original *inside* the moved ``ds:Signature`` (SAML
    Raider's XSW6, and XSW8's ``ds:Object``): the enveloped-signature transform removes the whole
    Signature subtree, original included, so with xmlsec those never verify at all.
    """

    RESPONSE_SIGNATURE_MOVED_TO_INJECTED = "xsw1"
    """A new Response (new ID, injected assertion) carries the original Response's signature,
    followed by the original Response without its signature."""
    RESPONSE_SIGNED_BEFORE_SIGNATURE = "xsw2"
    """Like XSW1, with the original Response placed before the (now detached) signature."""
    RESPONSE_SIGNED_IN_EXTENSIONS = "response-in-extensions"
    """A new Response with the injected assertion; the original signed Response, signature and
    all, inside its ``samlp:Extensions``."""
    INJECTED_BEFORE_SIGNED = "xsw3"
    """Injected assertion first, the signed one after it, both children of the Response."""
    SIGNED_INSIDE_INJECTED = "xsw4"
    """The signed assertion wrapped as the last child of the injected one."""
    SIGNATURE_MOVED_TO_INJECTED = "xsw5"
    """The injected assertion carries the signature; the original, without its signature, is
    appended at the end of the Response."""
    INJECTED_IN_EXTENSIONS = "xsw7"
    """The injected assertion inside ``samlp:Extensions`` (first in document order), the signed
    one where it belongs."""
    SIGNED_IN_EXTENSIONS = "signed-in-extensions"
    """The signed assertion moved into ``samlp:Extensions``, the injected one where the
    assertion belongs."""
    SIGNED_IN_INJECTED_ADVICE = "signed-in-advice"
    """The signed assertion inside the injected assertion's ``saml:Advice`` (schema-valid)."""

    @property
    def signs_response(self) -> bool:
        """Whether the variant wraps a Response signature (else an Assertion signature)."""
        return self.name.startswith("RESPONSE_")


class TestIdP:
    """A SAML 2.0 IdP with its own key pair, endpoints and metadata, issuing responses for the
    HTTP-POST binding."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        *,
        entity_id: str = DEFAULT_ENTITY_ID,
        sso_url: str = DEFAULT_SSO_URL,
        slo_url: str = DEFAULT_SLO_URL,
        keypair: KeyPair | None = None,
    ) -> None:
        self.entity_id = entity_id
        self.sso_url = sso_url
        self.slo_url = slo_url
        self.keypair = keypair if keypair is not None else make_keypair("Test IdP")

    def __repr__(self) -> str:
        return f"TestIdP(entity_id={self.entity_id!r})"

    # --- Describing the IdP to an SP --------------------------------------------------------

    def metadata_xml(
        self,
        *,
        include_certificate: bool = True,
        want_authn_requests_signed: bool | None = None,
        name_id_formats: Sequence[str] = (NAMEID_EMAIL, NAMEID_PERSISTENT),
    ) -> str:
        """``md:EntityDescriptor`` with an ``IDPSSODescriptor``: a signing ``KeyDescriptor``,
        HTTP-Redirect SingleLogoutService, NameIDFormats, and HTTP-Redirect and HTTP-POST
        SingleSignOnService. (python3-saml copies ``WantAuthnRequestsSigned`` into the SP's
        ``security.authnRequestsSigned``, so it is left out unless asked for.)"""
        root = etree.Element(_q(NS_MD, "EntityDescriptor"), nsmap={"md": NS_MD, "ds": NS_DS})
        root.set("entityID", self.entity_id)
        idp = etree.SubElement(root, _q(NS_MD, "IDPSSODescriptor"))
        idp.set("protocolSupportEnumeration", NS_SAMLP)
        if want_authn_requests_signed is not None:
            idp.set("WantAuthnRequestsSigned", "true" if want_authn_requests_signed else "false")
        if include_certificate:
            key_descriptor = etree.SubElement(idp, _q(NS_MD, "KeyDescriptor"), use="signing")
            key_info = etree.SubElement(key_descriptor, _q(NS_DS, "KeyInfo"))
            x509_data = etree.SubElement(key_info, _q(NS_DS, "X509Data"))
            etree.SubElement(
                x509_data, _q(NS_DS, "X509Certificate")
            ).text = self.keypair.certificate_b64
        etree.SubElement(
            idp,
            _q(NS_MD, "SingleLogoutService"),
            Binding=BINDING_HTTP_REDIRECT,
            Location=self.slo_url,
        )
        for name_id_format in name_id_formats:
            etree.SubElement(idp, _q(NS_MD, "NameIDFormat")).text = name_id_format
        for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
            etree.SubElement(
                idp, _q(NS_MD, "SingleSignOnService"), Binding=binding, Location=self.sso_url
            )
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode("utf-8")

    def metadata_without_certificate(self) -> str:
        """The same metadata with no ``KeyDescriptor`` at all."""
        return self.metadata_xml(include_certificate=False)

    def python3_saml_idp_settings(self) -> dict[str, Any]:
        """The ``idp`` section of a python3-saml settings dict for this IdP."""
        return {
            "entityId": self.entity_id,
            "singleSignOnService": {"url": self.sso_url, "binding": BINDING_HTTP_REDIRECT},
            "singleLogoutService": {"url": self.slo_url, "binding": BINDING_HTTP_REDIRECT},
            "x509cert": self.keypair.certificate_b64,
        }

    def allauth_idp_settings(self) -> dict[str, str]:
        """The ``idp`` section of an allauth SAML ``SocialApp.settings`` (configured by hand
        rather than by ``metadata_url``, which would be fetched over the network)."""
        return {
            "entity_id": self.entity_id,
            "sso_url": self.sso_url,
            "slo_url": self.slo_url,
            "x509cert": self.keypair.certificate_b64,
        }

    # --- Responses --------------------------------------------------------------------------

    def build_response(
        self,
        *,
        acs_url: str,
        audience: str | None,
        name_id: str,
        attributes: Mapping[str, Sequence[str]] | None = None,
        in_response_to: str | None = None,
        name_id_format: str = NAMEID_EMAIL,
        not_before: datetime | None = None,
        not_on_or_after: datetime | None = None,
        subject_not_on_or_after: datetime | None = None,
        session_not_on_or_after: datetime | None = None,
        session_index: str | None = None,
        authn_context: str = AC_PASSWORD_PROTECTED_TRANSPORT,
        issue_instant: datetime | None = None,
        assertion_id: str | None = None,
        response_id: str | None = None,
        issuer: str | None = None,
        destination: str | None = None,
        omit_destination: bool = False,
        recipient: str | None = None,
        status_message: str | None = None,
        sign_assertion: bool = True,
        sign_response: bool = False,
        signature_algorithm: str = RSA_SHA256,
        digest_algorithm: str = SHA256,
        key: KeyPair | None = None,
    ) -> str:
        """A successful ``samlp:Response`` with one bearer assertion, base64-encoded for the
        HTTP-POST binding (the ``SAMLResponse`` form field).

        - ``acs_url``: the SP's ACS; becomes Response ``Destination`` and
          SubjectConfirmationData ``Recipient`` unless ``destination`` / ``recipient`` override
          it; ``omit_destination`` leaves ``Destination`` out.
        - ``audience``: the SP entity ID in ``AudienceRestriction``; None leaves the
          restriction out (which python3-saml accepts!).
        - ``in_response_to``: the AuthnRequest ID, on the Response and on
          SubjectConfirmationData; None for IdP-initiated (unsolicited) responses.
        - ``name_id`` / ``name_id_format``: the subject.
        - ``attributes``: name -> values in an ``AttributeStatement``; None or empty leaves the
          statement out (python3-saml rejects that unless ``wantAttributeStatement`` is False).
          Names containing ":" get NameFormat uri, others basic.
        - ``not_before`` / ``not_on_or_after``: the Conditions window, timezone-aware; default
          now - 2 min and now + 5 min. python3-saml allows 300 s of clock drift on these.
        - ``subject_not_on_or_after``: SubjectConfirmationData ``NotOnOrAfter``, checked with
          no drift allowance; defaults to ``not_on_or_after``.
        - ``session_not_on_or_after``: AuthnStatement ``SessionNotOnOrAfter``; None omits it.
        - ``session_index``, ``authn_context``, ``issue_instant``, ``assertion_id``,
          ``response_id``: what they say; random IDs and "now" by default.
        - ``issuer``: the Issuer of both Response and Assertion (default this IdP's entity ID).
        - ``status_message``: an optional ``samlp:StatusMessage``.
        - ``sign_assertion`` / ``sign_response``: which elements get an enveloped signature (the
          assertion first, so a signed response covers a signed assertion).
        - ``signature_algorithm`` / ``digest_algorithm``: URIs, e.g. :data:`RSA_SHA1` and
          :data:`SHA1` for deprecated ones.
        - ``key``: sign with this key pair instead of the IdP's own (its certificate goes into
          ``KeyInfo``), i.e. a signature the SP must not trust.
        """
        envelope = self._envelope(
            acs_url=acs_url,
            audience=audience,
            in_response_to=in_response_to,
            name_id_format=name_id_format,
            not_before=not_before,
            not_on_or_after=not_on_or_after,
            subject_not_on_or_after=subject_not_on_or_after,
            session_not_on_or_after=session_not_on_or_after,
            session_index=session_index,
            authn_context=authn_context,
            issue_instant=issue_instant,
            response_id=response_id,
            issuer=issuer,
            destination=destination,
            omit_destination=omit_destination,
            recipient=recipient,
            status_message=status_message,
        )
        signer = key if key is not None else self.keypair
        assertion = self._assertion(
            envelope, name_id=name_id, attributes=attributes, assertion_id=assertion_id
        )
        if sign_assertion:
            assertion = _sign(assertion, signer, signature_algorithm, digest_algorithm)
        response = self._response(envelope, assertion)
        if sign_response:
            response = _sign(response, signer, signature_algorithm, digest_algorithm)
        return _b64(_serialize(response))

    def response_for_request(
        self,
        authn_request: AuthnRequestInfo | str,
        *,
        name_id: str,
        **options: Unpack[ResponseOptions],
    ) -> str:
        """A signed response answering an AuthnRequest (parsed, or a raw ``SAMLRequest``
        value): ACS URL from the request, audience = the request's Issuer, InResponseTo = its
        ID (unless ``in_response_to`` is given in ``options``)."""
        request = (
            parse_authn_request(authn_request) if isinstance(authn_request, str) else authn_request
        )
        if not request["acs_url"]:
            raise ValueError("the AuthnRequest has no AssertionConsumerServiceURL")
        options.setdefault("in_response_to", request["id"])
        return self.build_response(
            acs_url=request["acs_url"], audience=request["issuer"], name_id=name_id, **options
        )

    def error_response(
        self,
        *,
        acs_url: str,
        in_response_to: str | None = None,
        status_code: str = STATUS_RESPONDER,
        sub_status_code: str | None = STATUS_AUTHN_FAILED,
        status_message: str | None = None,
        sign_response: bool = False,
    ) -> str:
        """A non-success Response with no assertion, e.g. the user failed or cancelled at the
        IdP (Responder / AuthnFailed by default), base64-encoded."""
        envelope = self._envelope(acs_url=acs_url, audience=None, in_response_to=in_response_to)
        response = self._response(
            envelope,
            None,
            status_code=status_code,
            sub_status_code=sub_status_code,
            status_message=status_message,
        )
        if sign_response:
            response = _sign(response, self.keypair, RSA_SHA256, SHA256)
        return _b64(_serialize(response))

    # --- Attacks ----------------------------------------------------------------------------

    def unsigned_response(
        self,
        *,
        acs_url: str,
        audience: str | None,
        name_id: str,
        **options: Unpack[ResponseOptions],
    ) -> str:
        """A response that is correct in every way except that nothing in it is signed."""
        return self.build_response(
            acs_url=acs_url,
            audience=audience,
            name_id=name_id,
            sign_assertion=False,
            sign_response=False,
            **options,
        )

    def wrapped_response(
        self,
        *,
        acs_url: str,
        audience: str | None,
        signed_name_id: str,
        injected_name_id: str,
        signed_attributes: Mapping[str, Sequence[str]] | None = None,
        injected_attributes: Mapping[str, Sequence[str]] | None = None,
        variant: XswVariant = XswVariant.INJECTED_BEFORE_SIGNED,
        **options: Unpack[MessageOptions],
    ) -> str:
        """An XML Signature Wrapping attack.

        The IdP genuinely signs an assertion for ``signed_name_id`` (e.g. the attacker's own
        account, or any response the attacker captured); an unsigned assertion for
        ``injected_name_id`` (the victim the attacker wants to become) is then injected in the
        layout ``variant`` describes. The signature still verifies over the original element;
        an SP is safe only if what it reads is exactly what the signature covers. The
        ``RESPONSE_*`` variants sign the Response (not the assertion), so check them against an
        SP with ``wantMessagesSigned``.
        """
        envelope = self._envelope(acs_url=acs_url, audience=audience, **options)
        keypair = self.keypair
        signed = self._assertion(
            envelope,
            name_id=signed_name_id,
            attributes=signed_attributes,
            assertion_id=options.get("assertion_id"),
        )
        injected = self._assertion(
            envelope, name_id=injected_name_id, attributes=injected_attributes, assertion_id=None
        )

        if variant.signs_response:
            original = _sign(self._response(envelope, signed), keypair, RSA_SHA256, SHA256)
            if variant is XswVariant.RESPONSE_SIGNED_IN_EXTENSIONS:
                evil = self._response(
                    dataclasses.replace(envelope, response_id=new_id()),
                    injected,
                    extensions=[original],
                )
                return _b64(_serialize(evil))
            evil = self._response(dataclasses.replace(envelope, response_id=new_id()), injected)
            signature = _signature_of(original)
            stripped = _without_signature(original)
            issuer = evil.find(_q(NS_SAML, "Issuer"))
            if variant is XswVariant.RESPONSE_SIGNATURE_MOVED_TO_INJECTED:
                issuer.addnext(signature)
                signature.addnext(stripped)
            elif variant is XswVariant.RESPONSE_SIGNED_BEFORE_SIGNATURE:
                issuer.addnext(stripped)
                stripped.addnext(signature)
            else:  # pragma: no cover - every response variant is handled above
                raise AssertionError(variant)
            return _b64(_serialize(evil))

        signed = _sign(signed, keypair, RSA_SHA256, SHA256)
        if variant is XswVariant.INJECTED_BEFORE_SIGNED:
            response = self._response(envelope, injected)
            response.append(signed)
        elif variant is XswVariant.SIGNED_INSIDE_INJECTED:
            injected.append(signed)
            response = self._response(envelope, injected)
        elif variant is XswVariant.SIGNATURE_MOVED_TO_INJECTED:
            stripped = _without_signature(signed)
            injected.find(_q(NS_SAML, "Issuer")).addnext(_signature_of(signed))
            response = self._response(envelope, injected)
            response.append(stripped)
        elif variant is XswVariant.INJECTED_IN_EXTENSIONS:
            response = self._response(envelope, signed, extensions=[injected])
        elif variant is XswVariant.SIGNED_IN_EXTENSIONS:
            response = self._response(envelope, injected, extensions=[signed])
        elif variant is XswVariant.SIGNED_IN_INJECTED_ADVICE:
            advice = etree.Element(_q(NS_SAML, "Advice"))
            advice.append(signed)
            injected.find(_q(NS_SAML, "Conditions")).addnext(advice)
            response = self._response(envelope, injected)
        else:  # pragma: no cover - every variant is handled above
            raise AssertionError(variant)
        return _b64(_serialize(response))

    def tampered_attribute_response(
        self,
        *,
        acs_url: str,
        audience: str | None,
        name_id: str,
        attributes: Mapping[str, Sequence[str]],
        attribute: str,
        new_value: str,
        sign_response: bool = False,
        **options: Unpack[MessageOptions],
    ) -> str:
        """Sign (the assertion, and the response if ``sign_response``), then change the first
        value of ``attribute`` to ``new_value`` in the signed XML."""
        if attribute not in attributes or not attributes[attribute]:
            raise ValueError(f"{attribute!r} must be among the attributes, with a value")
        root = self._signed_tree(
            acs_url=acs_url,
            audience=audience,
            name_id=name_id,
            attributes=attributes,
            sign_response=sign_response,
            options=options,
        )
        for node in root.iter(_q(NS_SAML, "Attribute")):
            if node.get("Name") == attribute:
                node.find(_q(NS_SAML, "AttributeValue")).text = new_value
                break
        return _b64(_serialize(root))

    def tampered_name_id_response(
        self,
        *,
        acs_url: str,
        audience: str | None,
        name_id: str,
        new_name_id: str,
        sign_response: bool = False,
        **options: Unpack[ResponseOptions],
    ) -> str:
        """Sign, then replace the NameID (the subject allauth falls back on for the uid)."""
        attributes = options.pop("attributes", None)
        root = self._signed_tree(
            acs_url=acs_url,
            audience=audience,
            name_id=name_id,
            attributes=attributes,
            sign_response=sign_response,
            options=options,
        )
        next(root.iter(_q(NS_SAML, "NameID"))).text = new_name_id
        return _b64(_serialize(root))

    def response_with_doctype(
        self,
        *,
        acs_url: str,
        audience: str | None,
        name_id: str,
        levels: int = 3,
        fan_out: int = 10,
        **options: Unpack[ResponseOptions],
    ) -> str:
        """A validly signed response that also carries an internal DTD subset with nested
        entities ("billion laughs", small: ``fan_out ** levels`` copies of "lol", 1,000 by
        default) referenced from a ``samlp:StatusMessage`` outside the signed assertion (any
        ``status_message`` option is replaced). A parser that expands entities would see that
        text; python3-saml must refuse the DTD."""
        placeholder = "ENTITY-EXPANSION-" + secrets.token_hex(8)
        options["status_message"] = placeholder
        xml = base64.b64decode(
            self.build_response(acs_url=acs_url, audience=audience, name_id=name_id, **options)
        ).decode("utf-8")
        entities = ['<!ENTITY lol0 "lol">']
        for level in range(1, levels + 1):
            entities.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * fan_out}">')
        doctype = "<!DOCTYPE samlp:Response [\n  " + "\n  ".join(entities) + "\n]>\n"
        body = xml.replace(placeholder, f"&lol{levels};")
        return _b64(('<?xml version="1.0" encoding="UTF-8"?>\n' + doctype + body).encode())

    @staticmethod
    def malformed_response() -> str:
        """Base64 of XML that is not well-formed (mismatched and unclosed tags)."""
        xml = (
            f'<samlp:Response xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}" ID="_broken" '
            'Version="2.0"><saml:Issuer>https://idp.example.test/metadata</samlp:Issuer>'
            "<saml:Assertion>"
        )
        return _b64(xml.encode())

    # --- Internals --------------------------------------------------------------------------

    def _envelope(
        self,
        *,
        acs_url: str,
        audience: str | None,
        in_response_to: str | None = None,
        name_id_format: str = NAMEID_EMAIL,
        not_before: datetime | None = None,
        not_on_or_after: datetime | None = None,
        subject_not_on_or_after: datetime | None = None,
        session_not_on_or_after: datetime | None = None,
        session_index: str | None = None,
        authn_context: str = AC_PASSWORD_PROTECTED_TRANSPORT,
        issue_instant: datetime | None = None,
        assertion_id: str | None = None,  # taken by the caller; accepted so options pass through
        response_id: str | None = None,
        issuer: str | None = None,
        destination: str | None = None,
        omit_destination: bool = False,
        recipient: str | None = None,
        status_message: str | None = None,
    ) -> _Envelope:
        now = datetime.now(UTC)
        not_on_or_after = not_on_or_after or now + timedelta(minutes=5)
        return _Envelope(
            issuer=self.entity_id if issuer is None else issuer,
            audience=audience,
            in_response_to=in_response_to,
            destination=None
            if omit_destination
            else acs_url
            if destination is None
            else destination,
            recipient=acs_url if recipient is None else recipient,
            not_before=not_before or now - timedelta(minutes=2),
            not_on_or_after=not_on_or_after,
            subject_not_on_or_after=subject_not_on_or_after or not_on_or_after,
            session_not_on_or_after=session_not_on_or_after,
            session_index=new_id() if session_index is None else session_index,
            authn_context=authn_context,
            issue_instant=issue_instant or now,
            name_id_format=name_id_format,
            response_id=new_id() if response_id is None else response_id,
            status_message=status_message,
        )

    def _assertion(
        self,
        envelope: _Envelope,
        *,
        name_id: str,
        attributes: Mapping[str, Sequence[str]] | None,
        assertion_id: str | None,
    ) -> Any:
        assertion = etree.Element(_q(NS_SAML, "Assertion"), nsmap={"saml": NS_SAML})
        assertion.set("ID", assertion_id or new_id())
        assertion.set("Version", "2.0")
        assertion.set("IssueInstant", saml_time(envelope.issue_instant))
        etree.SubElement(assertion, _q(NS_SAML, "Issuer")).text = envelope.issuer

        subject = etree.SubElement(assertion, _q(NS_SAML, "Subject"))
        name_id_node = etree.SubElement(subject, _q(NS_SAML, "NameID"))
        name_id_node.set("Format", envelope.name_id_format)
        name_id_node.text = name_id
        confirmation = etree.SubElement(subject, _q(NS_SAML, "SubjectConfirmation"))
        confirmation.set("Method", CM_BEARER)
        data = etree.SubElement(confirmation, _q(NS_SAML, "SubjectConfirmationData"))
        data.set("NotOnOrAfter", saml_time(envelope.subject_not_on_or_after))
        data.set("Recipient", envelope.recipient)
        if envelope.in_response_to is not None:
            data.set("InResponseTo", envelope.in_response_to)

        conditions = etree.SubElement(assertion, _q(NS_SAML, "Conditions"))
        conditions.set("NotBefore", saml_time(envelope.not_before))
        conditions.set("NotOnOrAfter", saml_time(envelope.not_on_or_after))
        if envelope.audience is not None:
            restriction = etree.SubElement(conditions, _q(NS_SAML, "AudienceRestriction"))
            etree.SubElement(restriction, _q(NS_SAML, "Audience")).text = envelope.audience

        statement = etree.SubElement(assertion, _q(NS_SAML, "AuthnStatement"))
        statement.set("AuthnInstant", saml_time(envelope.issue_instant))
        statement.set("SessionIndex", envelope.session_index)
        if envelope.session_not_on_or_after is not None:
            statement.set("SessionNotOnOrAfter", saml_time(envelope.session_not_on_or_after))
        context = etree.SubElement(statement, _q(NS_SAML, "AuthnContext"))
        etree.SubElement(context, _q(NS_SAML, "AuthnContextClassRef")).text = envelope.authn_context

        if attributes:
            attribute_statement = etree.SubElement(assertion, _q(NS_SAML, "AttributeStatement"))
            for name, values in attributes.items():
                if isinstance(values, str):
                    raise TypeError(f"attribute {name!r}: give a list of values, not a string")
                node = etree.SubElement(attribute_statement, _q(NS_SAML, "Attribute"))
                node.set("Name", name)
                node.set("NameFormat", _ATTRNAME_URI if ":" in name else _ATTRNAME_BASIC)
                for value in values:
                    # xs and xsi are declared on the value itself, as many IdPs do, so that the
                    # xsi:type QName stays resolvable wherever the assertion is moved.
                    value_node = etree.SubElement(
                        node, _q(NS_SAML, "AttributeValue"), nsmap={"xs": NS_XS, "xsi": NS_XSI}
                    )
                    value_node.set(_q(NS_XSI, "type"), "xs:string")
                    value_node.text = value
        return assertion

    def _response(
        self,
        envelope: _Envelope,
        assertion: Any | None,
        *,
        status_code: str = STATUS_SUCCESS,
        sub_status_code: str | None = None,
        status_message: str | None = None,
        extensions: Sequence[Any] = (),
    ) -> Any:
        response = etree.Element(
            _q(NS_SAMLP, "Response"), nsmap={"samlp": NS_SAMLP, "saml": NS_SAML}
        )
        response.set("ID", envelope.response_id)
        response.set("Version", "2.0")
        response.set("IssueInstant", saml_time(envelope.issue_instant))
        if envelope.destination is not None:
            response.set("Destination", envelope.destination)
        if envelope.in_response_to is not None:
            response.set("InResponseTo", envelope.in_response_to)
        etree.SubElement(response, _q(NS_SAML, "Issuer")).text = envelope.issuer
        if extensions:
            extension_node = etree.SubElement(response, _q(NS_SAMLP, "Extensions"))
            for element in extensions:
                extension_node.append(element)
        status = etree.SubElement(response, _q(NS_SAMLP, "Status"))
        code = etree.SubElement(status, _q(NS_SAMLP, "StatusCode"), Value=status_code)
        if sub_status_code is not None:
            etree.SubElement(code, _q(NS_SAMLP, "StatusCode"), Value=sub_status_code)
        message = status_message if status_message is not None else envelope.status_message
        if message is not None:
            etree.SubElement(status, _q(NS_SAMLP, "StatusMessage")).text = message
        if assertion is not None:
            response.append(assertion)
        return response

    def _signed_tree(
        self,
        *,
        acs_url: str,
        audience: str | None,
        name_id: str,
        attributes: Mapping[str, Sequence[str]] | None,
        sign_response: bool,
        options: MessageOptions,
    ) -> Any:
        encoded = self.build_response(
            acs_url=acs_url,
            audience=audience,
            name_id=name_id,
            attributes=attributes,
            sign_response=sign_response,
            **options,
        )
        return _parse(base64.b64decode(encoded))
