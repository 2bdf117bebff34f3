"""Every write to the catalog: publishing, the version lifecycle, reviews, installs and the
per-organisation catalog policy. Each runs in one transaction with its audit event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.permissions import has_permission
from apps.audit.services import Actor, audit_record
from apps.core.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from apps.marketplace.blueprint_file import BlueprintFileInvalid, BlueprintSpec, FileError
from apps.marketplace.markdown import render_markdown
from apps.marketplace.models import (
    VISIBLE_VERSION_STATES,
    Blueprint,
    BlueprintVersion,
    CatalogPolicy,
    Category,
    Install,
    KnowledgeDocument,
    Publisher,
    Review,
    ReviewReport,
    SearchTerm,
    Visibility,
)
from apps.marketplace.search import term_trigrams, words_of
from apps.tenants.models import Tenant

State = BlueprintVersion.State

# The lifecycle: (from, to) → the permission that allows it (docs/blueprints.md, Lifecycle).
TRANSITIONS: dict[tuple[str, str], str] = {
    (State.DRAFT, State.EXPERIMENTAL): "blueprints:publish",
    (State.EXPERIMENTAL, State.CERTIFIED): "blueprints:certify",
    (State.CERTIFIED, State.EXPERIMENTAL): "blueprints:certify",  # rollback
    (State.CERTIFIED, State.DEPRECATED): "blueprints:certify",
    (State.DEPRECATED, State.RETIRED): "blueprints:certify",
}
REVIEW_MAX_CHARS = 4000
REPLY_MAX_CHARS = 4000
REPORT_MAX_CHARS = 1000


def _require(actor: Any, permission: str) -> None:
    """``actor`` None is the operator running a management command, who may do everything."""
    if actor is not None and not has_permission(actor, permission):
        raise Forbidden(_("Your role does not allow this."), details={"permission": permission})


def _require_publisher_member(actor: Any, publisher: Publisher) -> None:
    if actor is not None and not publisher.members.filter(pk=actor.pk).exists():
        raise Forbidden(
            _("You do not publish for %(publisher)s.") % {"publisher": publisher.name},
            code="not_publisher_member",
        )


def _actor_label(actor: Any) -> str:
    return actor.get_username() if actor is not None else "system"


# Publishing


@dataclass(frozen=True)
class PublishResult:
    blueprint: Blueprint
    version: BlueprintVersion
    blueprint_created: bool
    dry_run: bool


class _DryRun(Exception):
    pass


def blueprint_publish(*, spec: BlueprintSpec, actor: Any, dry_run: bool = False) -> PublishResult:
    """Create or update the blueprint a file describes and add its version as a draft.

    A dry run does everything (every check and constraint) and then rolls it back.
    """
    _require(actor, "blueprints:publish")
    result: PublishResult | None = None
    try:
        with transaction.atomic():
            result = _publish(spec=spec, actor=actor, dry_run=dry_run)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    assert result is not None
    return result


def _publish(*, spec: BlueprintSpec, actor: Any, dry_run: bool) -> PublishResult:
    data = spec.data
    publisher = Publisher.objects.filter(slug=data["publisher"]).first()
    if publisher is None:
        raise BlueprintFileInvalid(
            [FileError(None, None, "publisher", _("No publisher %r.") % data["publisher"])]
        )
    _require_publisher_member(actor, publisher)
    tenants: list[Tenant] = []
    if data.get("visibility") == Visibility.PRIVATE:
        slugs = list(data["tenants"])
        tenants = list(Tenant.objects.filter(slug__in=slugs))
        missing = sorted(set(slugs) - {t.slug for t in tenants})
        if missing:
            raise BlueprintFileInvalid(
                [FileError(None, None, "tenants", _("No organisation %s.") % ", ".join(missing))]
            )
    blueprint = Blueprint.objects.select_for_update().filter(slug=spec.slug).first()
    created = blueprint is None
    if blueprint is None:
        blueprint = Blueprint(slug=spec.slug, publisher=publisher)
    elif blueprint.publisher_id != publisher.pk:
        raise Conflict(
            _("The slug %(slug)s belongs to another publisher.") % {"slug": spec.slug},
            code="slug_taken",
            details={"slug": spec.slug},
        )
    elif blueprint.versions.filter(version=spec.version["version"]).exists():
        raise Conflict(
            _("Version %(version)s of %(slug)s already exists; publish a new version number.")
            % {"version": spec.version["version"], "slug": spec.slug},
            code="version_exists",
            details={"slug": spec.slug, "version": spec.version["version"]},
        )
    listing = {key: data[key] for key in LISTING_KEYS if key in data}
    # A listed blueprint keeps its listing until the new version is released: a draft must not
    # change what organisations see (its price, say) before anyone has reviewed it.
    if created or blueprint.state != Blueprint.State.LISTED:
        _apply_listing(blueprint, listing, tenants)

    spec_version = spec.version
    version = BlueprintVersion(
        blueprint=blueprint,
        version=spec_version["version"],
        major=spec.semver.major,
        minor=spec.semver.minor,
        patch=spec.semver.patch,
        is_release=spec.semver.is_release,
        prerelease=spec.semver.prerelease,
        changelog=spec_version["changelog"],
        instructions=spec_version["instructions"],
        provider=spec_version["provider"],
        model=spec_version["model"],
        parameters=spec_version.get("parameters", {}),
        tools=list(spec_version.get("tools", [])),
        guardrails=spec_version.get("guardrails", {}),
        settings_schema=spec_version.get("settings_schema", {"type": "object", "properties": {}}),
        listing=listing,
        created_by=_actor_label(actor),
    )
    version.full_clean(exclude=["blueprint", "replacement"])
    try:
        with transaction.atomic():
            version.save()
    except IntegrityError:  # the same version published concurrently
        raise Conflict(
            _("Version %(version)s of %(slug)s already exists; publish a new version number.")
            % {"version": version.version, "slug": spec.slug},
            code="version_exists",
            details={"slug": spec.slug, "version": version.version},
        ) from None
    KnowledgeDocument.objects.bulk_create(
        KnowledgeDocument(version=version, position=i, title=doc["title"], content=doc["content"])
        for i, doc in enumerate(spec_version.get("knowledge", []))
    )
    blueprint_state_refresh(blueprint)
    if not dry_run:
        audit_record(
            action="blueprint.published" if created else "blueprint.version_added",
            actor=actor,
            target_type="marketplace.blueprint",
            target_id=blueprint.pk,
            metadata={"slug": blueprint.slug, "version": version.version},
        )
    return PublishResult(blueprint, version, created, dry_run)


LISTING_KEYS = (
    "name", "summary", "description", "category", "tags", "icon", "pricing", "visibility",
    "tenants",
)  # fmt: skip


def _apply_listing(blueprint: Blueprint, listing: dict[str, Any], tenants: list[Tenant]) -> None:
    pricing = listing["pricing"]
    free = pricing["model"] == "free"
    blueprint.name = listing["name"]
    blueprint.summary = listing["summary"]
    blueprint.description = listing["description"]
    blueprint.description_html = render_markdown(listing["description"])
    blueprint.category = listing["category"]
    blueprint.tags = list(listing.get("tags", []))
    blueprint.tags_text = " ".join(blueprint.tags).replace("-", " ")
    blueprint.icon = listing.get("icon", "")
    blueprint.pricing_model = pricing["model"]
    blueprint.price = Decimal("0") if free else Decimal(pricing["price"])
    blueprint.currency = "" if free else pricing["currency"]
    blueprint.visibility = listing.get("visibility", Visibility.PUBLIC)
    blueprint.updated_at = timezone.now()
    blueprint.full_clean(exclude=["search_vector"])
    blueprint.save()
    blueprint.allowed_tenants.set(tenants)
    _index_terms(blueprint)


def _index_terms(blueprint: Blueprint) -> None:
    text = " ".join([blueprint.name, blueprint.summary, blueprint.tags_text])
    terms = sorted(set(words_of(text)))
    SearchTerm.objects.bulk_create(
        [SearchTerm(term=term, trigrams=term_trigrams(term)) for term in terms],
        ignore_conflicts=True,
    )


# Lifecycle


def version_transition(
    *,
    version: BlueprintVersion,
    to: str,
    actor: Any,
    sunset_date: date | None = None,
    replacement: BlueprintVersion | None = None,
    note: str = "",
) -> BlueprintVersion:
    """Move ``version`` to state ``to``, if the lifecycle and the actor's role allow it."""
    with transaction.atomic():
        version = BlueprintVersion.objects.select_for_update().get(pk=version.pk)
        current = version.state
        permission = TRANSITIONS.get((current, to))
        if permission is None:
            allowed = sorted(target for (source, target) in TRANSITIONS if source == current)
            raise Conflict(
                _("A %(current)s version cannot become %(to)s.") % {"current": current, "to": to},
                code="illegal_transition",
                details={"from": current, "to": to, "allowed": allowed},
            )
        _require(actor, permission)
        if permission == "blueprints:publish":
            _require_publisher_member(actor, version.blueprint.publisher)
        update = ["state", "state_changed_at"]
        if to == State.DEPRECATED:
            errors: dict[str, list[str]] = {}
            if sunset_date is None:
                errors["sunset_date"] = [_("A deprecated version needs a sunset date.")]
            elif sunset_date <= timezone.localdate():
                errors["sunset_date"] = [_("The sunset date must be in the future.")]
            if replacement is not None and (
                replacement.pk == version.pk or replacement.state not in VISIBLE_VERSION_STATES
            ):
                errors["replacement"] = [
                    _("The replacement must be another experimental or certified version.")
                ]
            if errors:
                raise InvalidInput(_("The deprecation is incomplete."), details=errors)
            version.sunset_date = sunset_date
            version.replacement = replacement
            update += ["sunset_date", "replacement"]
        version.state = to
        version.state_changed_at = timezone.now()
        version.save(update_fields=update)
        if current == State.DRAFT and version.listing:
            newest = (
                version.blueprint.versions.filter(state__in=VISIBLE_VERSION_STATES)
                .order_by("-major", "-minor", "-patch", "-is_release", "-prerelease")
                .first()
            )
            if newest is not None and newest.pk == version.pk:
                tenants = list(Tenant.objects.filter(slug__in=version.listing.get("tenants", [])))
                _apply_listing(version.blueprint, version.listing, tenants)
        blueprint_state_refresh(version.blueprint)
        audit_record(
            action="blueprint_version.transition",
            actor=actor,
            target_type="marketplace.blueprintversion",
            target_id=version.pk,
            metadata={
                "blueprint": version.blueprint.slug,
                "version": version.version,
                "from": current,
                "to": to,
                "sunset_date": sunset_date.isoformat() if sunset_date else None,
                "replacement": replacement.pk if replacement else None,
                "note": note[:500],
            },
        )
    return version


def blueprint_state_refresh(blueprint: Blueprint) -> None:
    """Derive the blueprint's listing from its versions (in the caller's transaction)."""
    states = set(blueprint.versions.values_list("state", flat=True))
    if states & set(VISIBLE_VERSION_STATES):
        new_state = Blueprint.State.LISTED
    elif states == {State.RETIRED}:
        new_state = Blueprint.State.RETIRED
    else:
        new_state = Blueprint.State.DRAFT
    blueprint.state = new_state
    blueprint.certified = State.CERTIFIED in states
    if new_state == Blueprint.State.LISTED and blueprint.published_at is None:
        blueprint.published_at = timezone.now()
    blueprint.updated_at = timezone.now()
    blueprint.save(update_fields=["state", "certified", "published_at", "updated_at"])


def blueprint_moderate(*, blueprint: Blueprint, hidden: bool, actor: Any, reason: str = "") -> None:
    _require(actor, "reviews:moderate")
    with transaction.atomic():
        Blueprint.objects.filter(pk=blueprint.pk).update(hidden=hidden, updated_at=timezone.now())
        audit_record(
            action="blueprint.hidden" if hidden else "blueprint.shown",
            actor=actor,
            target_type="marketplace.blueprint",
            target_id=blueprint.pk,
            metadata={"slug": blueprint.slug, "reason": reason[:500]},
        )


# Reviews (written from inside a tenant; their audit events go to the tenant's trail)


def _review_input(rating: Any, text: str) -> tuple[int, str]:
    errors: dict[str, list[str]] = {}
    try:
        value = int(rating)
        if isinstance(rating, bool) or str(rating).strip() != str(value) or not 1 <= value <= 5:
            raise ValueError
    except (TypeError, ValueError):
        errors["rating"] = [_("Give a rating from 1 to 5 stars.")]
        value = 0
    text = (text or "").strip()
    if len(text) > REVIEW_MAX_CHARS:
        errors["text"] = [
            _("A review has at most %(count)d characters.") % {"count": REVIEW_MAX_CHARS}
        ]
    if errors:
        raise InvalidInput(_("The review is not valid."), details=errors)
    return value, text


def _display_name(user: Any) -> str:
    return (user.full_name or "").strip() or _("A verified user")


def ratings_refresh(blueprint_id: int) -> None:
    """Recompute the blueprint's rating from its visible reviews, under the blueprint's row lock
    (callers hold it), so concurrent writers cannot leave the average and count disagreeing."""
    totals = Review.objects.filter(blueprint_id=blueprint_id, hidden=False).aggregate(
        count=Count("id"), total=Sum("rating"), average=Avg("rating")
    )
    Blueprint.objects.filter(pk=blueprint_id).update(
        rating_count=totals["count"],
        rating_sum=totals["total"] or 0,
        rating_avg=round(Decimal(totals["average"] or 0), 2),
    )


def _lock_blueprint(blueprint: Blueprint) -> Blueprint:
    return Blueprint.objects.select_for_update().get(pk=blueprint.pk)


def review_create(
    *, blueprint: Blueprint, tenant: Tenant, user: Any, rating: Any, text: str
) -> Review:
    _require(user, "reviews:write")
    value, text = _review_input(rating, text)
    with transaction.atomic():
        blueprint = _lock_blueprint(blueprint)
        if blueprint.state == Blueprint.State.RETIRED:
            raise Conflict(
                _("This blueprint is retired and no longer takes reviews."),
                code="blueprint_retired",
            )
        if Review.objects.filter(blueprint=blueprint, tenant=tenant, user_id=user.pk).exists():
            raise Conflict(
                _("You have already reviewed this blueprint; edit your review instead."),
                code="review_exists",
            )
        review = Review.objects.create(
            blueprint=blueprint,
            tenant=tenant,
            user_id=user.pk,
            author_name=_display_name(user),
            rating=value,
            text=text,
        )
        ratings_refresh(blueprint.pk)
        audit_record(
            action="review.created",
            actor=user,
            target_type="marketplace.review",
            target_id=review.pk,
            metadata={"blueprint": blueprint.slug, "rating": value},
        )
    return review


def _own_review(review: Review, tenant: Tenant, user: Any) -> None:
    if review.tenant_id != tenant.pk or review.user_id != user.pk:
        raise NotFound(_("No such review."))


def review_update(*, review: Review, tenant: Tenant, user: Any, rating: Any, text: str) -> Review:
    _require(user, "reviews:write")
    _own_review(review, tenant, user)
    value, text = _review_input(rating, text)
    if review.hidden:
        raise Conflict(
            _("Your review was hidden by the moderators and can no longer be edited."),
            code="review_hidden",
        )
    with transaction.atomic():
        blueprint = _lock_blueprint(review.blueprint)
        if blueprint.state == Blueprint.State.RETIRED:
            raise Conflict(
                _("This blueprint is retired and no longer takes reviews."),
                code="blueprint_retired",
            )
        before = review.rating
        review.rating, review.text = value, text
        review.author_name = _display_name(user)
        review.updated_at = timezone.now()
        review.save(update_fields=["rating", "text", "author_name", "updated_at"])
        ratings_refresh(blueprint.pk)
        audit_record(
            action="review.updated",
            actor=user,
            target_type="marketplace.review",
            target_id=review.pk,
            metadata={"blueprint": blueprint.slug, "rating": [before, value]},
        )
    return review


def review_delete(*, review: Review, tenant: Tenant, user: Any) -> None:
    _require(user, "reviews:write")
    _own_review(review, tenant, user)
    with transaction.atomic():
        blueprint = _lock_blueprint(review.blueprint)
        review_id = review.pk
        review.delete()
        ratings_refresh(blueprint.pk)
        audit_record(
            action="review.deleted",
            actor=user,
            target_type="marketplace.review",
            target_id=review_id,
            metadata={"blueprint": blueprint.slug},
        )


def review_reply(*, review: Review, actor: Any, text: str) -> Review:
    """The blueprint's publisher answers a review (one reply, which it may edit)."""
    _require(actor, "reviews:reply")
    _require_publisher_member(actor, review.blueprint.publisher)
    text = (text or "").strip()
    if not text or len(text) > REPLY_MAX_CHARS:
        raise InvalidInput(
            _("The reply is not valid."),
            details={
                "text": [
                    _("Write a reply of at most %(count)d characters.") % {"count": REPLY_MAX_CHARS}
                ]
            },
        )
    with transaction.atomic():
        review.publisher_reply = text
        review.replied_at = timezone.now()
        review.save(update_fields=["publisher_reply", "replied_at"])
        audit_record(
            action="review.replied",
            actor=actor,
            target_type="marketplace.review",
            target_id=review.pk,
            metadata={"blueprint": review.blueprint.slug},
        )
    return review


def review_report(*, review: Review, tenant: Tenant, user: Any, reason: str) -> ReviewReport:
    _require(user, "reviews:write")
    reason = (reason or "").strip()
    if not reason or len(reason) > REPORT_MAX_CHARS:
        raise InvalidInput(
            _("The report is not valid."),
            details={
                "reason": [
                    _("Say what is wrong, in at most %(count)d characters.")
                    % {"count": REPORT_MAX_CHARS}
                ]
            },
        )
    try:
        with transaction.atomic():
            report = ReviewReport.objects.create(
                review=review, tenant=tenant, reporter_id=user.pk, reason=reason
            )
            audit_record(
                action="review.reported",
                actor=user,
                target_type="marketplace.review",
                target_id=review.pk,
                metadata={"report": report.pk},
            )
    except IntegrityError:
        raise Conflict(
            _("You have already reported this review; the moderators will look at it."),
            code="already_reported",
        ) from None
    return report


def report_resolve(*, report: ReviewReport, decision: str, actor: Any) -> ReviewReport:
    """A platform admin hides the reported review ("remove") or keeps it ("dismiss")."""
    _require(actor, "reviews:moderate")
    if decision not in ("remove", "dismiss"):
        raise InvalidInput(
            _("Choose remove or dismiss."), details={"decision": [_("Choose remove or dismiss.")]}
        )
    with transaction.atomic():
        report = ReviewReport.objects.select_for_update().get(pk=report.pk)
        if report.status != ReviewReport.Status.OPEN:
            raise Conflict(_("This report has already been resolved."), code="report_resolved")
        review = report.review
        now = timezone.now()
        status = (
            ReviewReport.Status.REMOVED if decision == "remove" else ReviewReport.Status.DISMISSED
        )
        # Every open report on the review is answered by the same decision.
        ReviewReport.objects.filter(review=review, status=ReviewReport.Status.OPEN).update(
            status=status, resolved_at=now, resolved_by=_actor_label(actor)
        )
        if decision == "remove":
            _lock_blueprint(review.blueprint)
            Review.objects.filter(pk=review.pk).update(hidden=True)
            ratings_refresh(review.blueprint_id)
        audit_record(
            action="review.moderated",
            actor=actor,
            target_type="marketplace.review",
            target_id=review.pk,
            metadata={"decision": decision, "report": report.pk, "blueprint": review.blueprint_id},
        )
        report.refresh_from_db()
    return report


# Installs


def blueprint_install_record(*, version: BlueprintVersion, tenant: Tenant) -> None:
    """Count a deployment of ``version`` by ``tenant`` (called by the deployments service)."""
    Install.objects.create(blueprint_id=version.blueprint_id, version=version, tenant=tenant)
    Blueprint.objects.filter(pk=version.blueprint_id).update(install_count=F("install_count") + 1)


# The organisation's catalog policy


def catalog_policy_update(
    *,
    tenant: Tenant,
    actor: Any,
    mode: str,
    blueprint_slugs: list[str] | None = None,
    publisher_slugs: list[str] | None = None,
    categories: list[str] | None = None,
) -> CatalogPolicy:
    _require(actor, "catalog:manage")
    blueprint_slugs = sorted(set(blueprint_slugs or []))
    publisher_slugs = sorted(set(publisher_slugs or []))
    categories = sorted(set(categories or []))
    errors: dict[str, list[str]] = {}
    if mode not in CatalogPolicy.Mode.values:
        errors["mode"] = [_("Choose one of the catalog modes.")]
    blueprints = list(Blueprint.objects.filter(slug__in=blueprint_slugs))
    publishers = list(Publisher.objects.filter(slug__in=publisher_slugs))
    unknown = sorted(set(blueprint_slugs) - {b.slug for b in blueprints})
    if unknown:
        errors["blueprints"] = [_("No blueprint %s.") % ", ".join(unknown)]
    unknown = sorted(set(publisher_slugs) - {p.slug for p in publishers})
    if unknown:
        errors["publishers"] = [_("No publisher %s.") % ", ".join(unknown)]
    unknown = sorted(set(categories) - set(Category.values))
    if unknown:
        errors["categories"] = [_("No category %s.") % ", ".join(unknown)]
    if errors:
        raise InvalidInput(_("The catalog policy is not valid."), details=errors)
    with transaction.atomic():
        policy, _created = CatalogPolicy.objects.select_for_update().get_or_create(tenant=tenant)
        before = {
            "mode": policy.mode,
            "blueprints": sorted(policy.blueprints.values_list("slug", flat=True)),
            "publishers": sorted(policy.publishers.values_list("slug", flat=True)),
            "categories": sorted(policy.categories),
        }
        policy.mode = mode
        policy.categories = categories
        policy.updated_at = timezone.now()
        policy.save(update_fields=["mode", "categories", "updated_at"])
        policy.blueprints.set(blueprints)
        policy.publishers.set(publishers)
        after = {
            "mode": mode,
            "blueprints": blueprint_slugs,
            "publishers": publisher_slugs,
            "categories": categories,
        }
        audit_record(
            action="catalog_policy.updated",
            actor=actor,
            target_type="marketplace.catalogpolicy",
            target_id=policy.pk,
            metadata={"before": before, "after": after},
        )
    return policy


def publisher_ensure(*, slug: str, name: str, verified: bool = False) -> Publisher:
    publisher, created = Publisher.objects.get_or_create(
        slug=slug, defaults={"name": name, "verified": verified}
    )
    if created:
        audit_record(
            action="publisher.created",
            actor=Actor.system(),
            target_type="marketplace.publisher",
            target_id=publisher.pk,
            metadata={"slug": slug},
        )
    return publisher
