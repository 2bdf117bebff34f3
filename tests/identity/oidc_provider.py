"""A small, real OpenID Connect provider for tests.

`LocalOIDCProvider` serves the authorization-code flow over real HTTP on 127.0.0.1 (a free port
chosen by the OS) from a background thread, so client code under test -- django-allauth's
``openid_connect`` provider, which talks to it with ``requests`` and verifies tokens with PyJWT --
runs unpatched against it::

    with LocalOIDCProvider() as idp:
        idp.add_client("acme-app", "s3cret", ["http://acme.localhost/accounts/oidc/acme/login/callback/"])
        idp.next_user = {"sub": "u-1", "email": "ada@acme.example", "groups": ["admins"]}
        ...  # point a SocialApp's settings["server_url"] at idp.issuer and sign in

There is no login page: the person who "signs in" is chosen beforehand with ``next_user`` and
``/authorize`` answers at once with a 302 back to the client's ``redirect_uri``.

Endpoints (all under ``issuer``, i.e. ``http://127.0.0.1:<port><path_prefix>``):

- ``GET  /.well-known/openid-configuration``  discovery document
- ``GET  /jwks``                              the public signing key as a JWK Set
- ``GET|POST /authorize``                     authorization endpoint (``response_type=code``)
- ``POST /token``                             token endpoint (``grant_type=authorization_code``;
  ``client_secret_post`` or ``client_secret_basic``; PKCE ``S256``)
- ``GET|POST /userinfo``                      UserInfo endpoint (``Authorization: Bearer ...``)

Negative cases are produced by setting ``tamper`` (see `Tamper`) before the token exchange,
``require_pkce``, ``next_user = None`` (the person refuses: ``error=access_denied``) or
``discovery_overrides``. What the provider received is kept in ``requests``,
``last_authorize_params``, ``last_token_params``, ``last_token_auth_method``, ``last_id_token``
and ``last_access_token``.

Tokens are signed with ``cryptography`` directly (not with PyJWT), so that verifying them with
PyJWT in a test checks two independent implementations against each other.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypedDict
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "DEFAULT_USER",
    "LocalOIDCProvider",
    "OIDCClient",
    "Tamper",
    "b64url",
    "pkce_pair",
]

HOST = "127.0.0.1"
WELL_KNOWN_PATH = "/.well-known/openid-configuration"
AUTHORIZE_PATH = "/authorize"
TOKEN_PATH = "/token"
USERINFO_PATH = "/userinfo"
JWKS_PATH = "/jwks"

CLIENT_SECRET_POST = "client_secret_post"
CLIENT_SECRET_BASIC = "client_secret_basic"

DEFAULT_USER: dict[str, Any] = {
    "sub": "alice-0001",
    "email": "alice@example.com",
    "email_verified": True,
    "given_name": "Alice",
    "family_name": "Liddell",
    "name": "Alice Liddell",
    "groups": ["engineering"],
}
"""The person who signs in when a test does not choose one with ``next_user``."""


class Tamper(TypedDict, total=False):
    """Ways to spoil what the provider issues; set ``provider.tamper`` before the token exchange.

    Every key is optional and they combine. ``provider.tamper`` stays in force until changed
    (``provider.tamper = {}`` or ``provider.reset()``).
    """

    bad_signature: bool
    """Sign the id_token with another RSA key, keeping the published ``kid``."""
    alg_none: bool
    """Issue an unsigned id_token: header ``{"alg": "none", "kid": <kid>}``, empty signature."""
    iss: str
    """Put this ``iss`` in the id_token instead of the issuer."""
    aud: str | list[str]
    """Put this ``aud`` in the id_token instead of the client_id."""
    expired: bool
    """Issue an id_token that expired an hour ago (``iat`` two hours ago)."""
    nonce: str
    """Put this ``nonce`` in the id_token instead of the one sent to ``/authorize``."""
    drop_nonce: bool
    """Leave ``nonce`` out of the id_token even though one was sent to ``/authorize``."""
    claims: dict[str, Any]
    """Merged over the id_token's claims last, so it can set or override any claim."""
    drop_claims: list[str]
    """Claims removed from the id_token (after ``claims`` is merged)."""
    userinfo: dict[str, Any]
    """Merged over the ``/userinfo`` response."""
    token_error: str
    """``/token`` answers 400 ``{"error": <token_error>}`` instead of issuing tokens."""


_TAMPER_KEYS = frozenset(Tamper.__optional_keys__) | frozenset(Tamper.__required_keys__)


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, code_challenge)`` pair for the ``S256`` method."""
    verifier = secrets.token_urlsafe(64)
    return verifier, b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class OIDCClient:
    """A client (relying party) registered with the provider."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str | None = None
    """``client_secret_post`` or ``client_secret_basic`` to accept only that one; None: either."""


@dataclass
class _AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    user: dict[str, Any]
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float
    used: bool = False
    access_tokens: list[str] = field(default_factory=list)


@dataclass
class _AccessToken:
    client_id: str
    user: dict[str, Any]
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(status: int, payload: Mapping[str, Any], **headers: str) -> _Response:
    return _Response(
        status,
        json.dumps(payload).encode("utf-8"),
        {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            **headers,
        },
    )


def _oauth_error(status: int, error: str, description: str, **headers: str) -> _Response:
    return _json_response(status, {"error": error, "error_description": description}, **headers)


def _redirect(location: str) -> _Response:
    return _Response(HTTPStatus.FOUND, b"", {"Location": location, "Cache-Control": "no-store"})


def _with_query(url: str, params: Mapping[str, str]) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: LocalOIDCProvider, port: int) -> None:
        self.provider = provider
        super().__init__((HOST, port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "LocalOIDCProvider/1.0"
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at shutdown

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        response = self.server.provider._dispatch(method, self.path, headers, body)
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet; ``provider.requests`` records what arrived."""


class LocalOIDCProvider:
    """An OpenID Connect provider on 127.0.0.1 serving the authorization-code flow, for tests.

    Use it as a context manager (or call `start` / `stop`). ``issuer`` and the endpoint URLs are
    known once it has started. State that tests may read or set:

    - ``next_user``: the claims of the person who signs in at the next ``/authorize`` (stays in
      force until changed; ``sub`` is required, ``email_verified`` defaults to True, ``name`` to
      given + family name, ``groups`` to ``[]``). None makes ``/authorize`` redirect back with
      ``error=access_denied``.
    - ``require_pkce``: ``/authorize`` without a ``code_challenge`` redirects back with
      ``error=invalid_request``.
    - ``tamper``: see `Tamper`.
    - ``discovery_overrides``: merged over the discovery document.
    - ``requests``: ``(method, path)`` of every request received, path without query string.
    - ``last_authorize_params`` / ``last_token_params``: the parameters of the latest request to
      ``/authorize`` / ``/token`` (query or form; client secrets included).
    - ``last_token_auth_method``: how the latest successful client authentication at ``/token``
      was made (``client_secret_post`` or ``client_secret_basic``).
    - ``last_id_token`` / ``last_access_token``: what ``/token`` issued last.
    - ``server_errors``: tracebacks of exceptions raised while handling a request (each answered
      with a 500); a test can assert it is empty.
    """

    def __init__(
        self,
        *,
        path_prefix: str = "",
        port: int = 0,
        code_ttl: int = 60,
        access_token_ttl: int = 300,
        id_token_ttl: int = 300,
    ) -> None:
        """``path_prefix`` (e.g. ``"/realms/acme"``) is appended to the issuer and every endpoint;
        ``port`` 0 lets the OS choose a free one. TTLs are in seconds."""
        prefix = path_prefix.strip("/")
        self.path_prefix = f"/{prefix}" if prefix else ""
        self._port = port
        self.code_ttl = code_ttl
        self.access_token_ttl = access_token_ttl
        self.id_token_ttl = id_token_ttl

        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._rogue_key: rsa.RSAPrivateKey | None = None
        self.kid = self._thumbprint()

        self.clients: dict[str, OIDCClient] = {}
        self._next_user: dict[str, Any] | None = _normalise_user(DEFAULT_USER)
        self.require_pkce = False
        self._tamper: Tamper = {}
        self.discovery_overrides: dict[str, Any] = {}

        self.requests: list[tuple[str, str]] = []
        self.last_authorize_params: dict[str, str] | None = None
        self.last_token_params: dict[str, str] | None = None
        self.last_token_auth_method: str | None = None
        self.last_id_token: str | None = None
        self.last_access_token: str | None = None
        self.server_errors: list[str] = []

        self._codes: dict[str, _AuthorizationCode] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 and serve from a background thread."""
        if self._server is not None:
            raise RuntimeError("LocalOIDCProvider is already running")
        server = _Server(self, self._port)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"local-oidc-{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the serving thread (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LocalOIDCProvider is not running: use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def issuer(self) -> str:
        """``http://127.0.0.1:<port><path_prefix>``; also what a SocialApp's ``server_url`` is."""
        return f"http://{HOST}:{self.port}{self.path_prefix}"

    @property
    def discovery_url(self) -> str:
        return self.issuer + WELL_KNOWN_PATH

    @property
    def authorization_endpoint(self) -> str:
        return self.issuer + AUTHORIZE_PATH

    @property
    def token_endpoint(self) -> str:
        return self.issuer + TOKEN_PATH

    @property
    def userinfo_endpoint(self) -> str:
        return self.issuer + USERINFO_PATH

    @property
    def jwks_uri(self) -> str:
        return self.issuer + JWKS_PATH

    # -- configuration -------------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str],
        *,
        token_endpoint_auth_method: str | None = None,
    ) -> OIDCClient:
        """Register (or replace) a client. Redirect URIs are compared exactly, as OIDC requires."""
        if token_endpoint_auth_method not in (None, CLIENT_SECRET_POST, CLIENT_SECRET_BASIC):
            raise ValueError(
                f"unsupported token_endpoint_auth_method {token_endpoint_auth_method!r}"
            )
        client = OIDCClient(
            client_id, client_secret, tuple(redirect_uris), token_endpoint_auth_method
        )
        with self._lock:
            self.clients[client_id] = client
        return client

    @property
    def next_user(self) -> dict[str, Any] | None:
        """The claims of whoever signs in at ``/authorize`` from now on (a normalised copy)."""
        return self._next_user

    @next_user.setter
    def next_user(self, value: Mapping[str, Any] | None) -> None:
        self._next_user = None if value is None else _normalise_user(value)

    @property
    def tamper(self) -> Tamper:
        return self._tamper

    @tamper.setter
    def tamper(self, value: Tamper) -> None:
        _check_tamper(value)
        self._tamper = value

    def reset(self) -> None:
        """Forget tampering, choices and logs (clients, keys and issued tokens are kept)."""
        with self._lock:
            self._next_user = _normalise_user(DEFAULT_USER)
            self.require_pkce = False
            self._tamper = {}
            self.discovery_overrides = {}
            self.requests.clear()
            self.last_authorize_params = self.last_token_params = None
            self.last_token_auth_method = self.last_id_token = self.last_access_token = None
            self.server_errors.clear()

    def hits(self, path: str, method: str | None = None) -> int:
        """How many requests reached ``path`` (relative to the issuer, e.g. ``"/token"``)."""
        full = self.path_prefix + path
        return sum(1 for m, p in self.requests if p == full and method in (None, m))

    # -- keys and tokens -----------------------------------------------------------------------

    @property
    def public_jwk(self) -> dict[str, str]:
        numbers = self._signing_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    @property
    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.public_jwk]}

    def _thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint of the signing key, used as its ``kid``."""
        numbers = self._signing_key.public_key().public_numbers()
        canonical = json.dumps(
            {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
            separators=(",", ":"),
            sort_keys=True,
        )
        return b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    def sign_jwt(
        self,
        claims: Mapping[str, Any],
        *,
        alg_none: bool = False,
        rogue_key: bool = False,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """A compact JWS of ``claims``: RS256 with the published key and ``kid`` by default;
        ``rogue_key`` signs with another key under the same ``kid``; ``alg_none`` leaves it
        unsigned. ``header`` is merged over the protected header."""
        protected: dict[str, Any] = {
            "alg": "none" if alg_none else "RS256",
            "typ": "JWT",
            "kid": self.kid,
            **(header or {}),
        }
        signing_input = (
            b64url(json.dumps(protected, separators=(",", ":")).encode("utf-8"))
            + "."
            + b64url(json.dumps(dict(claims), separators=(",", ":")).encode("utf-8"))
        )
        if alg_none:
            return signing_input + "."
        if rogue_key:
            if self._rogue_key is None:
                self._rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key = self._rogue_key
        else:
            key = self._signing_key
        signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)

    def discovery_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "userinfo_endpoint": self.userinfo_endpoint,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [CLIENT_SECRET_POST, CLIENT_SECRET_BASIC],
            "scopes_supported": ["openid", "profile", "email", "groups"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "email",
                "email_verified",
                "name",
                "given_name",
                "family_name",
                "groups",
            ],
        }
        document.update(self.discovery_overrides)
        return document

    # -- request handling ----------------------------------------------------------------------

    def _dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        parts = urlsplit(target)
        path = parts.path
        with self._lock:
            self.requests.append((method, path))
        if not path.startswith(self.path_prefix + "/"):
            return _oauth_error(HTTPStatus.NOT_FOUND, "not_found", f"no endpoint at {path}")
        route = path[len(self.path_prefix) :]
        try:
            if route == WELL_KNOWN_PATH and method == "GET":
                return _json_response(HTTPStatus.OK, self.discovery_document())
            if route == JWKS_PATH and method == "GET":
                return _json_response(HTTPStatus.OK, self.jwks)
            if route == AUTHORIZE_PATH and method in ("GET", "POST"):
                raw = parts.query if method == "GET" else body.decode("utf-8")
                return self._authorize(dict(parse_qsl(raw, keep_blank_values=True)))
            if route == TOKEN_PATH and method == "POST":
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
                return self._token(form, headers.get("authorization"))
            if route == USERINFO_PATH and method in ("GET", "POST"):
                return self._userinfo(headers.get("authorization"))
            if route in (WELL_KNOWN_PATH, JWKS_PATH, AUTHORIZE_PATH, TOKEN_PATH, USERINFO_PATH):
                return _oauth_error(
                    HTTPStatus.METHOD_NOT_ALLOWED, "invalid_request", f"{method} not allowed"
                )
            return _oauth_error(HTTPStatus.NOT_FOUND, "not_found", f"no endpoint at {path}")
        except Exception:
            with self._lock:
                self.server_errors.append(traceback.format_exc())
            return _oauth_error(
                HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "see server_errors"
            )

    def _authorize(self, params: dict[str, str]) -> _Response:
        with self._lock:
            self.last_authorize_params = dict(params)
            client = self.clients.get(params.get("client_id", ""))
            redirect_uri = params.get("redirect_uri", "")
            # Never redirect to an address that is not the client's own (RFC 6749 4.1.2.1).
            if client is None:
                return _oauth_error(HTTPStatus.BAD_REQUEST, "invalid_request", "unknown client_id")
            if redirect_uri not in client.redirect_uris:
                return _oauth_error(
                    HTTPStatus.BAD_REQUEST, "invalid_request", "redirect_uri is not registered"
                )
            state = params.get("state")

            def back(**result: str) -> _Response:
                if state is not None:
                    result["state"] = state
                return _redirect(_with_query(redirect_uri, result))

            if params.get("response_type") != "code":
                return back(
                    error="unsupported_response_type",
                    error_description="only response_type=code is supported",
                )
            scope = params.get("scope", "")
            if "openid" not in scope.split():
                return back(error="invalid_scope", error_description="scope must include openid")
            challenge = params.get("code_challenge") or None
            method = None
            if challenge is not None:
                method = params.get("code_challenge_method") or "plain"
                if method != "S256":
                    return back(
                        error="invalid_request",
                        error_description="code_challenge_method must be S256",
                    )
                if not 43 <= len(challenge) <= 128:
                    return back(error="invalid_request", error_description="bad code_challenge")
            elif self.require_pkce:
                return back(error="invalid_request", error_description="code_challenge required")
            if self._next_user is None:
                return back(error="access_denied", error_description="the person declined")
            user = copy.deepcopy(self._next_user)
            now = time.time()
            code = secrets.token_urlsafe(32)
            self._codes[code] = _AuthorizationCode(
                code=code,
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                user=user,
                scope=scope,
                nonce=params.get("nonce"),
                code_challenge=challenge,
                code_challenge_method=method,
                auth_time=int(now),
                expires_at=now + self.code_ttl,
            )
            return back(code=code)

    def _authenticate_client(
        self, form: dict[str, str], authorization: str | None
    ) -> OIDCClient | _Response:
        unauthorized = {"WWW-Authenticate": 'Basic realm="LocalOIDCProvider"'}
        basic: tuple[str, str] | None = None
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if ":" not in decoded:
                return _oauth_error(
                    HTTPStatus.UNAUTHORIZED, "invalid_client", "malformed Basic", **unauthorized
                )
            client_id, _, secret = decoded.partition(":")
            basic = (client_id, secret)
        if basic is not None and "client_secret" in form:
            return _oauth_error(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                "more than one client authentication method",
            )
        if basic is not None:
            method = CLIENT_SECRET_BASIC
            client_id, secret = basic
            if form.get("client_id", client_id) != client_id:
                return _oauth_error(
                    HTTPStatus.BAD_REQUEST, "invalid_request", "client_id differs from Basic"
                )
            # RFC 6749 2.3.1 form-encodes both before Basic; many clients (requests) do not.
            candidates = {(client_id, secret), (unquote_plus(client_id), unquote_plus(secret))}
        elif "client_secret" in form:
            method = CLIENT_SECRET_POST
            candidates = {(form.get("client_id", ""), form["client_secret"])}
        else:
            return _oauth_error(
                HTTPStatus.UNAUTHORIZED,
                "invalid_client",
                "client authentication required",
                **unauthorized,
            )
        for client_id, secret in candidates:
            client = self.clients.get(client_id)
            if client is not None and hmac.compare_digest(
                secret.encode(), client.client_secret.encode()
            ):
                if client.token_endpoint_auth_method not in (None, method):
                    return _oauth_error(
                        HTTPStatus.UNAUTHORIZED,
                        "invalid_client",
                        f"{method} is not allowed for this client",
                        **unauthorized,
                    )
                self.last_token_auth_method = method
                return client
        return _oauth_error(
            HTTPStatus.UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
            **unauthorized,
        )

    def _token(self, form: dict[str, str], authorization: str | None) -> _Response:
        with self._lock:
            self.last_token_params = dict(form)
            tamper = self._tamper
            _check_tamper(tamper)
            if "token_error" in tamper:
                return _oauth_error(
                    HTTPStatus.BAD_REQUEST, tamper["token_error"], "forced by provider.tamper"
                )
            client = self._authenticate_client(form, authorization)
            if isinstance(client, _Response):
                return client
            if form.get("grant_type") != "authorization_code":
                return _oauth_error(
                    HTTPStatus.BAD_REQUEST, "unsupported_grant_type", "only authorization_code"
                )
            grant = self._codes.get(form.get("code", ""))
            if grant is None or grant.client_id != client.client_id:
                return _oauth_error(HTTPStatus.BAD_REQUEST, "invalid_grant", "unknown code")
            if grant.used:
                # A replayed code revokes what it was exchanged for (RFC 6749 4.1.2).
                for token in grant.access_tokens:
                    self._access_tokens[token].revoked = True
                return _oauth_error(HTTPStatus.BAD_REQUEST, "invalid_grant", "code already used")
            grant.used = True
            if time.time() > grant.expires_at:
                return _oauth_error(HTTPStatus.BAD_REQUEST, "invalid_grant", "code expired")
            if form.get("redirect_uri") != grant.redirect_uri:
                return _oauth_error(HTTPStatus.BAD_REQUEST, "invalid_grant", "redirect_uri differs")
            verifier = form.get("code_verifier")
            if grant.code_challenge is not None:
                if not verifier:
                    return _oauth_error(
                        HTTPStatus.BAD_REQUEST, "invalid_grant", "code_verifier required"
                    )
                computed = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
                if not hmac.compare_digest(computed, grant.code_challenge):
                    return _oauth_error(
                        HTTPStatus.BAD_REQUEST, "invalid_grant", "code_verifier does not match"
                    )
            elif verifier:
                return _oauth_error(
                    HTTPStatus.BAD_REQUEST, "invalid_grant", "no code_challenge was sent"
                )

            access_token = secrets.token_urlsafe(32)
            self._access_tokens[access_token] = _AccessToken(
                client_id=client.client_id,
                user=grant.user,
                scope=grant.scope,
                expires_at=time.time() + self.access_token_ttl,
            )
            grant.access_tokens.append(access_token)
            id_token = self._id_token(grant, access_token, tamper)
            self.last_access_token = access_token
            self.last_id_token = id_token
            return _json_response(
                HTTPStatus.OK,
                {
                    "access_token": access_token,
                    "token_type": "Bearer",
                    "expires_in": self.access_token_ttl,
                    "scope": grant.scope,
                    "id_token": id_token,
                },
            )

    def _id_token(self, grant: _AuthorizationCode, access_token: str, tamper: Tamper) -> str:
        now = int(time.time())
        claims: dict[str, Any] = dict(grant.user)
        claims.update(
            {
                "iss": self.issuer,
                "sub": grant.user["sub"],
                "aud": grant.client_id,
                "iat": now,
                "exp": now + self.id_token_ttl,
                "auth_time": grant.auth_time,
                "jti": uuid.uuid4().hex,
                "at_hash": b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16]),
            }
        )
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        if "iss" in tamper:
            claims["iss"] = tamper["iss"]
        if "aud" in tamper:
            claims["aud"] = tamper["aud"]
        if tamper.get("expired"):
            claims["iat"] = claims["auth_time"] = now - 7200
            claims["exp"] = now - 3600
        if "nonce" in tamper:
            claims["nonce"] = tamper["nonce"]
        if tamper.get("drop_nonce"):
            claims.pop("nonce", None)
        claims.update(tamper.get("claims", {}))
        for name in tamper.get("drop_claims", []):
            claims.pop(name, None)
        return self.sign_jwt(
            claims,
            alg_none=bool(tamper.get("alg_none")),
            rogue_key=bool(tamper.get("bad_signature")),
        )

    def _userinfo(self, authorization: str | None) -> _Response:
        if not authorization or not authorization.lower().startswith("bearer "):
            return _oauth_error(
                HTTPStatus.UNAUTHORIZED,
                "invalid_request",
                "a Bearer access token is required",
                **{"WWW-Authenticate": 'Bearer realm="LocalOIDCProvider"'},
            )
        with self._lock:
            token = self._access_tokens.get(authorization[7:].strip())
            if token is None or token.revoked or time.time() > token.expires_at:
                return _oauth_error(
                    HTTPStatus.UNAUTHORIZED,
                    "invalid_token",
                    "unknown, expired or revoked access token",
                    **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            claims = dict(token.user)
            claims.update(self._tamper.get("userinfo", {}))
            return _json_response(HTTPStatus.OK, claims)


def _check_tamper(value: Mapping[str, Any]) -> None:
    unknown = set(value) - _TAMPER_KEYS
    if unknown:
        raise ValueError(f"unknown tamper keys {sorted(unknown)}; known: {sorted(_TAMPER_KEYS)}")


def _normalise_user(user: Mapping[str, Any]) -> dict[str, Any]:
    claims = dict(user)
    if not claims.get("sub"):
        raise ValueError("next_user needs a non-empty 'sub'")
    claims["sub"] = str(claims["sub"])
    claims.setdefault("email_verified", True)
    if "name" not in claims:
        name = " ".join(
            str(part) for part in (claims.get("given_name"), claims.get("family_name")) if part
        )
        if name:
            claims["name"] = name
    claims["groups"] = list(claims.get("groups", []))
    return claims
