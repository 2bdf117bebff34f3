"""Accounts and sign-in (django-allauth): email + password, email verification, TOTP, SSO."""

from config.env import env

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "core:home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

ACCOUNT_ADAPTER = "apps.accounts.adapter.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "apps.accounts.adapter.SocialAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
# People join an organisation by invitation or through its identity provider; both prove the
# address. Anyone else must confirm it before signing in.
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None  # the person chooses ("Remember me")
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Agent Factory] "
ACCOUNT_PREVENT_ENUMERATION = True
# Five failed attempts for one address lock it for five minutes (per organisation: the
# rate-limit keys live in the tenant-prefixed cache); ten a minute per client address.
ACCOUNT_RATE_LIMITS = {
    "login_failed": env.str("LOGIN_FAILED_RATE_LIMIT", default="10/m/ip,5/5m/key"),
}

MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Agent Factory"

SOCIALACCOUNT_ONLY = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # never link accounts by an IdP-asserted email alone
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_PROVIDERS: dict[str, dict[str, object]] = {
    # Organisations' own identity providers (apps/sso): allauth's providers, made strict — signed
    # assertions, replay protection and XML errors handled for SAML; id_token signature and nonce
    # verified for OIDC. allauth's SocialApp objects are built from apps.sso connections at run time.
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "provider_class": "apps.sso.oidc.provider.TenantOIDCProvider",
    },
    "saml": {"provider_class": "apps.sso.saml.provider.TenantSAMLProvider"},
}
# Identity-provider addresses (SAML metadata, OIDC issuer) must be https:// unless this is set
# (development against a local IdP). The metadata fetch refuses private and loopback addresses
# (server-side request forgery) unless SSO_ALLOW_PRIVATE_NETWORKS is set.
SSO_ALLOW_INSECURE_URLS = env.bool("SSO_ALLOW_INSECURE_URLS", default=False)
SSO_ALLOW_PRIVATE_NETWORKS = env.bool("SSO_ALLOW_PRIVATE_NETWORKS", default=False)

SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=60 * 60 * 12)
