"""The catalog: blueprints, their versions, reviews and installs. Public schema only.

Tenants appear here only as foreign keys to ``tenants.Tenant`` (public). People of a tenant live in
that tenant's schema, so a review keeps the author's tenant, user id and display name, never a
cross-schema foreign key.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.tenants.models import Tenant

SEARCH_CONFIG = "english"


class Category(models.TextChoices):
    CUSTOMER_SUPPORT = "customer-support", _("Customer support")
    IT = "it", _("IT")
    HR = "hr", _("People and HR")
    SALES = "sales", _("Sales")
    MARKETING = "marketing", _("Marketing")
    PRODUCTIVITY = "productivity", _("Productivity")
    ENGINEERING = "engineering", _("Engineering")
    DATA = "data", _("Data and analytics")
    COMPLIANCE = "compliance", _("Legal and compliance")
    LANGUAGE = "language", _("Language")
    OTHER = "other", _("Other")


class PricingModel(models.TextChoices):
    FREE = "free", _("Free")
    MONTHLY = "monthly", _("Monthly subscription")
    PER_MESSAGE = "per_message", _("Per message")


class Visibility(models.TextChoices):
    PUBLIC = "public", _("Public")
    PRIVATE = "private", _("Private to listed organisations")


class Publisher(models.Model):
    """Who releases blueprints: a company or team, with the platform users allowed to act for it."""

    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    name = models.CharField(_("name"), max_length=120)
    website = models.URLField(_("website"), blank=True)
    verified = models.BooleanField(_("verified"), default=False)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="publishers", blank=True, verbose_name=_("members")
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = _("publisher")
        verbose_name_plural = _("publishers")

    def __str__(self) -> str:
        return self.name


class Blueprint(models.Model):
    class State(models.TextChoices):
        # Derived from the versions (services.blueprint_state_refresh): a blueprint is listed while
        # one of its versions may be seen and deployed, retired when every version is.
        DRAFT = "draft", _("Draft")
        LISTED = "listed", _("Listed")
        RETIRED = "retired", _("Retired")

    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    name = models.CharField(_("name"), max_length=80)
    summary = models.CharField(_("summary"), max_length=200)
    description = models.TextField(_("description"), help_text=_("Markdown."))
    description_html = models.TextField(editable=False, default="")
    category = models.CharField(_("category"), max_length=32, choices=Category.choices)
    tags = ArrayField(models.CharField(max_length=30), default=list, blank=True)
    tags_text = models.TextField(editable=False, default="")
    icon = models.CharField(_("icon"), max_length=8, blank=True)
    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="blueprints")
    pricing_model = models.CharField(
        _("pricing"), max_length=16, choices=PricingModel.choices, default=PricingModel.FREE
    )
    price = models.DecimalField(_("price"), max_digits=10, decimal_places=4, default=0)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    visibility = models.CharField(
        _("visibility"), max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    allowed_tenants = models.ManyToManyField(
        Tenant, related_name="private_blueprints", blank=True, verbose_name=_("organisations")
    )
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.DRAFT)
    certified = models.BooleanField(_("certified"), default=False)
    hidden = models.BooleanField(
        _("hidden by moderation"), default=False, help_text=_("Hidden blueprints are not shown.")
    )
    rating_count = models.PositiveIntegerField(default=0)
    rating_sum = models.PositiveIntegerField(default=0)
    rating_avg = models.DecimalField(max_digits=3, decimal_places=2, default=0)
    install_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    search_vector = models.GeneratedField(
        expression=SearchVector("name", weight="A", config=SEARCH_CONFIG)
        + SearchVector("tags_text", weight="A", config=SEARCH_CONFIG)
        + SearchVector("summary", weight="B", config=SEARCH_CONFIG)
        + SearchVector("description", weight="C", config=SEARCH_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("blueprint")
        verbose_name_plural = _("blueprints")
        indexes: ClassVar = [
            GinIndex(fields=["search_vector"], name="mkt_blueprint_search"),
            GinIndex(fields=["tags"], name="mkt_blueprint_tags"),
            models.Index(fields=["state", "category"], name="mkt_blueprint_category"),
            models.Index(fields=["-install_count"], name="mkt_blueprint_popular"),
            models.Index(fields=["-rating_avg"], name="mkt_blueprint_rating"),
            models.Index(
                F("published_at").desc(nulls_last=True), "id", name="mkt_blueprint_newest"
            ),
            models.Index(fields=["name", "id"], name="mkt_blueprint_name"),
            models.Index(fields=["updated_at"], name="mkt_blueprint_updated"),
            # Lets the facet queries read the index alone for the listed, visible catalog.
            models.Index(
                fields=["category", "pricing_model", "publisher", "certified"],
                include=["visibility", "tags", "id"],
                condition=Q(state="listed", hidden=False),
                name="mkt_blueprint_facets",
            ),
        ]
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(pricing_model="free", price=0)
                | (~Q(pricing_model="free") & Q(price__gt=0) & ~Q(currency="")),
                name="mkt_blueprint_price_matches_model",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class BlueprintVersion(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", _("Draft")
        EXPERIMENTAL = "experimental", _("Experimental")
        CERTIFIED = "certified", _("Certified")
        DEPRECATED = "deprecated", _("Deprecated")
        RETIRED = "retired", _("Retired")

    class Provider(models.TextChoices):
        LOCAL = "local", _("Built-in offline provider")
        OPENAI = "openai", _("OpenAI or compatible")
        ANTHROPIC = "anthropic", _("Anthropic")

    blueprint = models.ForeignKey(Blueprint, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(_("version"), max_length=64)
    # The semantic version's parts, so versions sort by precedence in SQL. A pre-release sorts
    # before its release: is_release orders 1.0.0-rc.1 below 1.0.0.
    major = models.PositiveIntegerField()
    minor = models.PositiveIntegerField()
    patch = models.PositiveIntegerField()
    is_release = models.BooleanField()
    prerelease = models.CharField(max_length=64, blank=True)
    changelog = models.TextField(_("changelog"))
    instructions = models.TextField(_("instructions"))
    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices)
    model = models.CharField(_("model"), max_length=100)
    parameters = models.JSONField(_("generation parameters"), default=dict, blank=True)
    tools = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    guardrails = models.JSONField(_("guardrails"), default=dict, blank=True)
    settings_schema = models.JSONField(_("settings schema"), default=dict, blank=True)
    # The listing fields of the file this version came from, applied when it is released.
    listing = models.JSONField(default=dict, blank=True, editable=False)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.DRAFT)
    sunset_date = models.DateField(_("sunset date"), null=True, blank=True)
    replacement = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("suggested replacement"),
    )
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    state_changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["blueprint", "-major", "-minor", "-patch", "-is_release", "-prerelease"]
        verbose_name = _("blueprint version")
        verbose_name_plural = _("blueprint versions")
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["blueprint", "version"], name="mkt_version_unique"),
            models.CheckConstraint(
                condition=~Q(state="deprecated") | Q(sunset_date__isnull=False),
                name="mkt_version_deprecated_has_sunset",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.blueprint.slug} {self.version}"

    @property
    def deployable(self) -> bool:
        return self.state in VISIBLE_VERSION_STATES

    @property
    def secret_fields(self) -> list[str]:
        properties = self.settings_schema.get("properties", {})
        return [name for name, spec in properties.items() if spec.get("x-secret") is True]


# Versions a tenant may see and deploy. Drafts are the publisher's; retired ones stop serving.
VISIBLE_VERSION_STATES = (
    BlueprintVersion.State.EXPERIMENTAL,
    BlueprintVersion.State.CERTIFIED,
    BlueprintVersion.State.DEPRECATED,
)


class KnowledgeDocument(models.Model):
    """A document shipped with a version, for the agent's knowledge search."""

    version = models.ForeignKey(
        BlueprintVersion, on_delete=models.CASCADE, related_name="documents"
    )
    position = models.PositiveSmallIntegerField(default=0)
    title = models.CharField(_("title"), max_length=200)
    content = models.TextField(_("content"))

    class Meta:
        ordering = ["version", "position"]
        verbose_name = _("knowledge document")
        verbose_name_plural = _("knowledge documents")

    def __str__(self) -> str:
        return self.title


class Review(models.Model):
    blueprint = models.ForeignKey(Blueprint, on_delete=models.CASCADE, related_name="reviews")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # The author lives in the tenant's schema: an id there, not a foreign key.
    user_id = models.BigIntegerField()
    author_name = models.CharField(_("author"), max_length=150)
    rating = models.PositiveSmallIntegerField(_("rating"))
    text = models.TextField(_("review"), blank=True)
    publisher_reply = models.TextField(_("publisher reply"), blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    hidden = models.BooleanField(_("hidden by moderation"), default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name = _("review")
        verbose_name_plural = _("reviews")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["blueprint", "tenant", "user_id"], name="mkt_review_one_per_user"
            ),
            models.CheckConstraint(
                condition=Q(rating__gte=1, rating__lte=5), name="mkt_review_rating_1_to_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rating}★ {self.blueprint.slug} by {self.author_name}"


class ReviewReport(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        REMOVED = "removed", _("Review hidden")
        DISMISSED = "dismissed", _("Dismissed")

    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="reports")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    reporter_id = models.BigIntegerField()
    reason = models.TextField(_("reason"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.OPEN
    )
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=254, blank=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name = _("review report")
        verbose_name_plural = _("review reports")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["review", "tenant", "reporter_id"],
                condition=Q(status="open"),
                name="mkt_report_one_open_per_reporter",
            ),
        ]

    def __str__(self) -> str:
        return f"report on review {self.review_id}"


class Install(models.Model):
    """One deployment of a blueprint by a tenant: the source of install counts and trending."""

    blueprint = models.ForeignKey(Blueprint, on_delete=models.CASCADE, related_name="installs")
    version = models.ForeignKey(BlueprintVersion, on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    installed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes: ClassVar = [
            models.Index(fields=["installed_at", "blueprint"], name="mkt_install_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.blueprint_id} by {self.tenant_id}"


class CatalogPolicy(models.Model):
    """What an organisation's members see and may deploy."""

    class Mode(models.TextChoices):
        ALL = "all", _("The whole public catalog")
        ALLOW_LIST = "allow_list", _("Only allowed blueprints, publishers and categories")
        PRIVATE_ONLY = "private_only", _("Only blueprints private to this organisation")

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="catalog_policy")
    mode = models.CharField(_("mode"), max_length=16, choices=Mode.choices, default=Mode.ALL)
    blueprints = models.ManyToManyField(Blueprint, blank=True, related_name="+")
    publishers = models.ManyToManyField(Publisher, blank=True, related_name="+")
    categories = ArrayField(
        models.CharField(max_length=32, choices=Category.choices), default=list, blank=True
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("catalog policy")
        verbose_name_plural = _("catalog policies")

    def __str__(self) -> str:
        return f"{self.tenant.slug}: {self.mode}"


class SearchTerm(models.Model):
    """A word of the catalog with its trigrams, for correcting typos in search queries.

    The embedded PostgreSQL has no pg_trgm, so trigram similarity is computed over this lexicon:
    a GIN index on the trigram arrays finds the candidates sharing trigrams with a query word.
    """

    term = models.CharField(max_length=64, primary_key=True)
    trigrams = ArrayField(models.CharField(max_length=3))

    class Meta:
        indexes: ClassVar = [GinIndex(fields=["trigrams"], name="mkt_term_trigrams")]

    def __str__(self) -> str:
        return self.term
