"""People. A user lives in one schema: an account at ``acme`` is unrelated to one at ``globex``.

Platform staff live in the public schema; an organisation's members live in its own schema. Since a
user belongs to exactly one organisation, the role is a field of the user, not a membership row.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    # Tenant roles (design.md, Roles)
    TENANT_ADMIN = "tenant_admin", _("Tenant admin")
    DEVELOPER = "developer", _("Developer")
    OPERATOR = "operator", _("Operator")
    ANALYST = "analyst", _("Analyst")
    AUDITOR = "auditor", _("Auditor")
    MEMBER = "member", _("Member")
    # Platform roles, public schema only
    PLATFORM_ADMIN = "platform_admin", _("Platform admin")
    PUBLISHER = "publisher", _("Publisher")


TENANT_ROLES = frozenset(
    {Role.TENANT_ADMIN, Role.DEVELOPER, Role.OPERATOR, Role.ANALYST, Role.AUDITOR, Role.MEMBER}
)
PLATFORM_ROLES = frozenset({Role.PLATFORM_ADMIN, Role.PUBLISHER})


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        if not email:
            raise ValueError("A user needs an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **fields)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(_("email address"), max_length=254, unique=True)
    full_name = models.CharField(_("full name"), max_length=150, blank=True)
    role = models.CharField(_("role"), max_length=32, choices=Role.choices, default=Role.MEMBER)
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(
        _("staff status"), default=False, help_text=_("May sign in to this site's admin.")
    )
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email


class ApiKey(models.Model):
    """A personal API credential. Only its prefix and a SHA-256 of the whole key are stored: the
    key is 256 random bits, so a fast hash is as strong as a slow one and keeps every API call
    cheap. What a key may do is its owner's current role, narrowed to the key's scopes."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(_("scopes"), default=list)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )


class SecurityPolicy(models.Model):
    """The organisation's sign-in rules (one row per schema, see ``security_policy_get``)."""

    require_mfa = models.BooleanField(
        _("require two-factor authentication"),
        default=False,
        help_text=_("Everyone must set up an authenticator app before using the workspace."),
    )
    require_sso = models.BooleanField(
        _("require single sign-on"),
        default=False,
        help_text=_(
            "Password sign-in is refused for everyone except the break-glass administrator."
        ),
    )
    break_glass_user = models.ForeignKey(
        User,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("break-glass administrator"),
        help_text=_("A tenant admin who may still sign in with a password when SSO is required."),
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("security policy")
        verbose_name_plural = _("security policy")

    def __str__(self) -> str:
        return str(_("Security policy"))


class Invitation(models.Model):
    """An invitation to join the organisation with a role. The link carries a signed token naming
    this invitation and this organisation; it works once, for seven days."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        ACCEPTED = "accepted", _("Accepted")
        REVOKED = "revoked", _("Revoked")

    email = models.EmailField(_("email address"))
    role = models.CharField(_("role"), max_length=32, choices=Role.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    accepted_at = models.DateTimeField(_("accepted"), null=True, blank=True)
    accepted_user = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                condition=models.Q(status="pending"),
                name="accounts_invitation_one_pending_per_email",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_role_display()})"
