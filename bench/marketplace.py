"""Benchmark: catalog search with filters over 10,000 blueprints, at the API.

Target (the marketplace issue): p95 under 50 ms for ``GET /api/v1/marketplace/blueprints/`` with a
fixed mix of plain browsing, text and typo queries, filters, sort orders and later pages.

Runs against its own database, never a developer's:

* with ``DATABASE_URL`` set, a database named ``agentfactory_bench_marketplace`` on the same server
  is dropped and recreated (through the server's ``postgres`` database) and, unless ``--keep``,
  dropped again at the end;
* without it, the embedded PostgreSQL starts under a temporary ``DATA_DIR``.

Steps: ``bootstrap`` (public and template schemas, the shipped catalog); a tenant ``bench`` with a
member and an API key scoped ``catalog:read``; N generated blueprints (bulk inserts, one version
each, the typo lexicon filled as publishing would, then VACUUM ANALYZE); the query mix over HTTP
against ``manage.py serve`` with one keep-alive client; then, in this process inside the tenant's
schema, every statement ``catalog_search`` runs is timed and explained.

Facet counts are cached (platform cache, keyed by tenant, policy, ``catalog_stamp()``, words and
filters, not sort or page), so a request is either a facet-cache miss ("cold") or a hit ("warm"),
and the two are measured and reported apart: the first request of each query after the server
starts, then ``--cold-rounds`` rounds of the mix, then ``--requests`` warm requests. Before every
cold request one blueprint's ``updated_at`` is touched, as any listing change does, which moves
``catalog_stamp()`` and so misses every key; each run also uses its own ``CACHE_KEY_PREFIX``, so
nothing cached by an earlier run or another process can be hit. The target is checked on both.

Usage (from the repository root)::

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentfactory_dev
    .venv/bin/python bench/marketplace.py
    .venv/bin/python bench/marketplace.py --blueprints 10000 --requests 600 --cold-rounds 3 --keep

It prints figures; it asserts nothing except the latency target, cold and warm (PASS/FAIL, exit
status 1 if either fails).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import re
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from benchlib import (
    BenchDatabase,
    Summary,
    finish,
    prepare_database,
    product_server,
    setup_django,
)
from benchlib import ms as _ms

BENCH_DATABASE = "agentfactory_bench_marketplace"
TARGET_P95_MS = 50.0
TENANT_SLUG = "bench"
SEARCH_PATH = "/api/v1/marketplace/blueprints/"
BASELINE_PATH = "/api/v1/tenant/"
HEALTH_PATH = "/healthz"
# Rounds of the mix after the first request of each query (all facet-cache hits), untimed.
WARMUP_ROUNDS = 1
# Untimed requests to the baseline endpoint before the first search, so that the first search
# does not also carry the server's own start (first connection, lazy imports).
SERVER_WARMUP_REQUESTS = 5
BASELINE_REQUESTS = 100
INPROCESS_ROUNDS = 3
FAST_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"
# The text+filter query whose plans are printed in full.
EXPLAINED_LABEL = "typo+filter custmer suport, customer-support, certified"


# --------------------------------------------------------------------------------------------
# Figures


# --------------------------------------------------------------------------------------------
# Environment and database (as bench/tenants.py)


def prepare_environment(keep: bool) -> BenchDatabase:
    """Point this process (and the server it starts) at a fresh bench database, before setup."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["AGENT_FACTORY_QUIET_STARTUP"] = "1"
    os.environ["LOG_LEVEL"] = "WARNING"
    # Production-like request handling: DEBUG wraps every cursor and records every query.
    os.environ.setdefault("DJANGO_DEBUG", "false")
    # Cache keys of this run only (the server inherits it): with a shared Redis, facet counts
    # cached by an earlier run or by another process can never be hit.
    os.environ["CACHE_KEY_PREFIX"] = f"bench-marketplace-{uuid.uuid4().hex[:12]}:"
    return prepare_database(BENCH_DATABASE, keep=keep, data_dir_prefix="agentfactory-bench-")


# --------------------------------------------------------------------------------------------
# Bootstrap, the tenant and its API key


@dataclass(frozen=True)
class BenchTenant:
    schema_name: str
    host: str
    api_key: str


def bootstrap_and_tenant() -> BenchTenant:
    from django.conf import settings
    from django.core.management import call_command
    from django.test.utils import override_settings
    from django_tenants.utils import schema_context

    from apps.accounts.api_keys import api_key_create
    from apps.accounts.models import Role
    from apps.accounts.services import user_create
    from apps.tenants.services import tenant_provision

    # Passwords are not what this benchmark is about (as in bench/tenants.py).
    override_settings(PASSWORD_HASHERS=[FAST_HASHER]).enable()
    print("bootstrap: migrating, publishing the shipped catalog...", flush=True)
    start = time.perf_counter_ns()
    call_command("bootstrap", verbosity=0, stdout=io.StringIO())
    print(f"bootstrap: done in {_ms(start) / 1000:.1f} s", flush=True)

    provisioned = tenant_provision(
        slug=TENANT_SLUG,
        name="Bench",
        admin_email=f"admin@{TENANT_SLUG}.example",
        admin_password=None,
    )
    tenant = provisioned.tenant
    with schema_context(tenant.schema_name):
        member = user_create(
            email=f"member@{TENANT_SLUG}.example",
            password=None,
            role=Role.MEMBER,
            email_verified=True,
        )
        created = api_key_create(user=member, name="marketplace bench", scopes=["catalog:read"])
    return BenchTenant(
        schema_name=tenant.schema_name,
        host=f"{TENANT_SLUG}.{settings.BASE_DOMAIN}",
        api_key=created.secret,
    )


# --------------------------------------------------------------------------------------------
# Generated catalog


@dataclass(frozen=True)
class Vocab:
    weight: int
    subjects: tuple[str, ...]
    phrases: tuple[str, ...]
    tags: tuple[str, ...]


VOCAB: dict[str, Vocab] = {
    "customer-support": Vocab(
        14,
        (
            "Customer Support", "Help Center", "Ticket Triage", "Returns", "Refund", "Live Chat",
            "Customer Service", "Complaint", "Warranty", "Order Status", "Support Inbox", "FAQ",
        ),
        (
            "answers customer questions about orders, returns and shipping",
            "triages incoming support tickets by urgency and topic",
            "drafts friendly replies to customer emails",
            "hands difficult conversations over to a human agent",
            "suggests help center articles for every ticket",
            "tracks refunds and warranty claims",
            "summarises long support threads for the next agent",
            "spots unhappy customers and escalates them early",
        ),
        (
            "faq", "returns", "refunds", "shipping", "tickets", "escalation", "live-chat",
            "ecommerce", "warranty", "self-service", "csat", "zendesk",
        ),
    ),
    "it": Vocab(
        10,
        (
            "IT Helpdesk", "Password Reset", "VPN", "Laptop Request", "Service Desk",
            "Access Request", "Incident", "Device", "Software License", "Printer",
        ),
        (
            "walks employees through VPN, Wi-Fi and printer problems",
            "resets passwords and unlocks accounts safely",
            "files laptop and software requests",
            "classifies incidents and routes them to the right team",
            "answers questions from the IT knowledge base",
            "keeps an inventory of devices and licenses",
        ),
        (
            "helpdesk", "vpn", "passwords", "itsm", "incidents", "devices", "onboarding",
            "access", "servicenow", "jira", "wifi",
        ),
    ),
    "hr": Vocab(
        9,
        (
            "HR Policy", "Onboarding", "Recruiting", "Leave", "Benefits", "Interview",
            "Candidate Screening", "Payroll", "Employee Handbook", "Performance Review",
        ),
        (
            "answers employee questions about leave, expenses and benefits",
            "screens candidates against the job description",
            "welcomes new hires and plans their first week",
            "drafts job descriptions and interview questions",
            "explains payroll and expense rules",
            "prepares performance review summaries",
        ),
        (
            "recruiting", "onboarding", "benefits", "leave", "policies", "interviews", "payroll",
            "hiring", "people", "handbook",
        ),
    ),
    "sales": Vocab(
        10,
        (
            "Sales Email", "Lead Qualification", "CRM", "Prospecting", "Proposal", "Deal Desk",
            "Pipeline", "Cold Outreach", "Account Research", "Quote",
        ),
        (
            "drafts personalised B2B sales emails",
            "qualifies inbound leads with discovery questions",
            "researches accounts before the first call",
            "writes proposals and quotes from your price list",
            "updates the CRM after every meeting",
            "forecasts the pipeline from deal notes",
        ),
        (
            "crm", "leads", "outreach", "b2b", "proposals", "pipeline", "salesforce", "hubspot",
            "prospecting", "quotes",
        ),
    ),
    "marketing": Vocab(
        11,
        (
            "Content Writer", "SEO", "Social Media", "Campaign", "Newsletter", "Brand Voice",
            "Ad Copy", "Landing Page", "Blog Post", "Press Release",
        ),
        (
            "writes on-brand blog posts and landing pages",
            "plans social media calendars",
            "suggests SEO keywords and meta descriptions",
            "drafts newsletters from your product updates",
            "tests ad copy variations",
            "keeps every text in your brand voice",
        ),
        (
            "seo", "content", "social-media", "copywriting", "newsletter", "ads", "branding",
            "campaigns", "blog", "email",
        ),
    ),
    "productivity": Vocab(
        12,
        (
            "Meeting Notes", "Meeting Summariser", "Calendar", "Task", "Email Triage",
            "Note Taking", "Project Status", "Daily Standup", "Inbox", "Document Search",
            "Invoice",
        ),
        (
            "turns meeting transcripts into minutes with action items",
            "triages your inbox and drafts replies",
            "schedules meetings across time zones",
            "writes weekly project status reports",
            "searches your documents and cites its sources",
            "extracts line items from invoices and receipts",
        ),
        (
            "meetings", "notes", "email", "calendar", "tasks", "summaries", "documents",
            "invoices", "slack", "teams",
        ),
    ),
    "engineering": Vocab(
        11,
        (
            "Code Review", "Pull Request", "Unit Test", "API Docs", "Bug Triage",
            "Release Notes", "Incident Postmortem", "SQL", "DevOps", "Kubernetes", "Regex",
        ),
        (
            "reviews pull requests for bugs and security issues",
            "writes unit tests for Python and TypeScript",
            "explains stack traces and suggests fixes",
            "drafts release notes from commit messages",
            "writes and optimises SQL queries",
            "documents REST APIs from source code",
        ),
        (
            "code-review", "testing", "python", "typescript", "sql", "devops", "kubernetes",
            "security", "github", "documentation", "api",
        ),
    ),
    "data": Vocab(
        9,
        (
            "Data Analyst", "SQL", "Dashboard", "Analytics", "Invoice Analysis", "Spreadsheet",
            "Forecast", "Report", "KPI", "Spend Analysis", "Churn",
        ),
        (
            "answers business questions with SQL and charts",
            "analyses invoices and spend by supplier",
            "builds dashboards from your metrics",
            "forecasts revenue and churn",
            "explains spreadsheet formulas",
            "computes KPIs step by step with stated formulas",
            "cleans and deduplicates CSV data",
        ),
        (
            "sql", "analytics", "dashboards", "forecasting", "spreadsheets", "kpi", "invoices",
            "reporting", "bigquery", "csv", "finance",
        ),
    ),
    "compliance": Vocab(
        6,
        (
            "Compliance Checker", "GDPR", "Contract Review", "Policy", "Risk Assessment",
            "Audit", "Privacy", "Vendor Assessment", "Data Retention", "SOC 2",
        ),
        (
            "checks processes against GDPR and data retention rules",
            "reviews contracts for risky clauses",
            "prepares audit evidence and checklists",
            "assesses vendors for security and privacy risks",
            "answers questions about internal policies",
            "tracks regulatory changes",
        ),
        (
            "gdpr", "contracts", "privacy", "risk", "audit", "legal", "soc2", "iso27001",
            "policies", "vendors",
        ),
    ),
    "language": Vocab(
        5,
        (
            "Translator", "Translation", "Localisation", "Proofreader", "Grammar", "Glossary",
            "Subtitle", "Interpreter", "Style Guide", "Multilingual Support",
        ),
        (
            "translates business text between European languages",
            "proofreads documents for grammar and style",
            "keeps your glossary and formality level",
            "localises UI strings with placeholders intact",
            "writes subtitles from transcripts",
            "answers customers in their own language",
        ),
        (
            "translation", "localisation", "grammar", "proofreading", "glossary", "multilingual",
            "german", "french", "spanish", "subtitles",
        ),
    ),
    "other": Vocab(
        3,
        (
            "Travel Planner", "Recipe", "Fitness Coach", "Study Buddy", "Event Planner",
            "Real Estate", "Legal Intake", "Tutor", "Trivia", "Gift Finder",
        ),
        (
            "plans trips with flights, hotels and a day-by-day schedule",
            "suggests recipes from what is in your fridge",
            "builds weekly training plans",
            "explains homework step by step",
            "organises events, invitations and seating plans",
            "answers questions about listings and viewings",
        ),
        (
            "travel", "education", "events", "fitness", "real-estate", "hospitality",
            "nonprofit", "fun", "coaching",
        ),
    ),
}  # fmt: skip

ROLES = (
    "Assistant", "Agent", "Copilot", "Helper", "Advisor", "Bot", "Analyst", "Writer", "Checker",
    "Coach", "Planner", "Summariser", "Reviewer", "Generator", "Navigator", "Buddy", "Expert",
)  # fmt: skip
ADJECTIVES = (
    "Smart", "Quick", "Friendly", "Enterprise", "Multilingual", "Instant", "Automated",
    "Secure", "Lightweight", "Advanced", "Simple", "Self-Service", "Turbo", "Open",
)  # fmt: skip
AUDIENCES = (
    "for small businesses", "for enterprise teams", "for startups", "for agencies",
    "for online shops", "for public sector teams", "for remote teams", "for finance teams",
    "for support teams", "for engineering teams",
)  # fmt: skip
GENERIC_TAGS = (
    "automation", "llm", "templates", "multilingual", "slack", "teams", "email", "api",
    "no-code", "gpt",
)  # fmt: skip
SENTENCES = (
    "It works offline on the built-in local provider and gets better with an OpenAI key.",
    "Every answer cites the document it comes from, so people can check it.",
    "Personal data typed into the chat is redacted before it reaches the model.",
    "Set your company name, tone of voice and escalation address when you deploy it.",
    "Ships with sample knowledge documents you can replace with your own.",
    "Knows its limits and says so instead of guessing.",
    "Comes with guardrails against prompt injection and off-topic requests.",
    "Answers in the language of the question.",
    "Keeps a short memory of the conversation for follow-up questions.",
    "Logs every action to the audit trail of your organisation.",
    "Connects to Slack and Microsoft Teams through the platform's channels.",
    "Settings let you choose the model, the temperature and the maximum answer length.",
    "Built and maintained by a team that uses it every day.",
    "Review the bundled policies against your own before going live.",
    "Includes a weekly report of the questions it could not answer.",
)
SYLLABLES = (
    "zen", "tri", "ora", "lum", "vex", "nova", "kai", "qu", "bri", "sol", "tek", "ly", "mo",
    "fin", "ara", "dex", "io", "pul", "sar", "vi", "ro", "na", "zi", "bel", "cor",
)  # fmt: skip
PUBLISHER_SUFFIXES = ("Labs", "AI", "Software", "Systems", "Partners", "Studio", "Works", "Tech")
ICONS = ("💬", "🛠", "📊", "🧾", "🌍", "📅", "🔒", "🤝", "✍", "🧠", "🚀", "📚")
PUBLISHERS = 40


@dataclass(frozen=True)
class CatalogFacts:
    blueprints: int
    publishers: int
    search_terms: int
    certified: int
    private: int
    seconds: float
    big_publisher: str
    small_publisher: str


def _brand(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _pick_category(rng: random.Random) -> str:
    names = list(VOCAB)
    return rng.choices(names, weights=[VOCAB[n].weight for n in names])[0]


def generate_catalog(count: int, seed: int) -> CatalogFacts:
    """``count`` listed blueprints of ``PUBLISHERS`` publishers, one visible version each, and
    the typo lexicon as ``services._index_terms`` fills it; then VACUUM ANALYZE."""
    from django.db import connection, transaction
    from django.utils import timezone
    from django.utils.html import escape
    from django.utils.text import slugify

    from apps.marketplace.models import (
        Blueprint,
        BlueprintVersion,
        Category,
        PricingModel,
        Publisher,
        SearchTerm,
        Visibility,
    )
    from apps.marketplace.search import term_trigrams, words_of
    from apps.tenants.models import Tenant

    missing = set(Category.values) ^ set(VOCAB)
    if missing:
        raise RuntimeError(f"the bench vocabulary and Category disagree on {sorted(missing)}")
    rng = random.Random(seed)
    now = timezone.now()
    start = time.perf_counter_ns()
    bench_tenant = Tenant.objects.get(slug=TENANT_SLUG)

    with transaction.atomic():
        publishers = Publisher.objects.bulk_create(
            Publisher(
                slug=f"bench-publisher-{i:02d}",
                name=f"{_brand(rng)} {rng.choice(PUBLISHER_SUFFIXES)}",
                verified=rng.random() < 0.5,
            )
            for i in range(PUBLISHERS)
        )
        # A few publishers carry most of the catalog (as in any marketplace).
        publisher_weights = [1 / (i + 1) ** 0.9 for i in range(PUBLISHERS)]

        blueprints: list[Blueprint] = []
        certified_flags: list[bool] = []
        private_allowed: list[int] = []
        for i in range(count):
            category = _pick_category(rng)
            vocab = VOCAB[category]
            other = VOCAB[_pick_category(rng)]
            parts = []
            if rng.random() < 0.45:
                parts.append(_brand(rng))
            if rng.random() < 0.3:
                parts.append(rng.choice(ADJECTIVES))
            parts.append(rng.choice(vocab.subjects))
            parts.append(rng.choice(ROLES))
            name = " ".join(parts)[:80]

            phrases = rng.sample(vocab.phrases, k=min(3, len(vocab.phrases)))
            if rng.random() < 0.3:
                phrases[-1] = rng.choice(other.phrases)
            summary = _sentence(f"{phrases[0]} and {phrases[1]} {rng.choice(AUDIENCES)}")[:200]

            body = [
                f"## What it does\n\n{_sentence(phrases[0])} {_sentence(phrases[1])} "
                f"{_sentence(phrases[2])}",
                "## Highlights\n\n"
                + "\n".join(f"- {s}" for s in rng.sample(SENTENCES, k=rng.randint(3, 6))),
                f"## Good to know\n\n{rng.choice(SENTENCES)} {rng.choice(SENTENCES)}",
            ]
            description = "\n\n".join(body)

            tags = rng.sample(vocab.tags, k=rng.randint(2, 4))
            if rng.random() < 0.4:
                tags.append(rng.choice(GENERIC_TAGS))
            if rng.random() < 0.15:
                tags.append(rng.choice(other.tags))
            tags = list(dict.fromkeys(tags))

            pricing = rng.choices(
                [PricingModel.FREE, PricingModel.MONTHLY, PricingModel.PER_MESSAGE],
                weights=[55, 30, 15],
            )[0]
            if pricing == PricingModel.FREE:
                price, currency = Decimal(0), ""
            elif pricing == PricingModel.MONTHLY:
                price = Decimal(rng.choice(["9", "19", "29", "49", "99", "199"]))
                currency = rng.choice(["USD", "USD", "EUR"])
            else:
                price = Decimal(rng.choice(["0.002", "0.005", "0.01", "0.02", "0.05"]))
                currency = rng.choice(["USD", "USD", "EUR"])

            certified = rng.random() < 0.35
            rating_count = 0 if rng.random() < 0.2 else min(int(rng.paretovariate(1.2) * 3), 5000)
            rating_sum = 0
            rating_avg = Decimal(0)
            if rating_count:
                average = min(5.0, max(1.0, rng.gauss(4.1, 0.6)))
                rating_sum = round(average * rating_count)
                rating_avg = round(Decimal(rating_sum) / rating_count, 2)
            installs = min(int(rng.paretovariate(1.1) * 10) - 10, 250_000)
            if certified:
                installs *= 3
            published_at = now - timedelta(seconds=rng.uniform(0, 3 * 365 * 86400))
            private = rng.random() < 0.02
            if private and rng.random() < 0.5:
                private_allowed.append(i)

            blueprints.append(
                Blueprint(
                    slug=f"{slugify(name)[:50].strip('-')}-{i:05d}",
                    name=name,
                    summary=summary,
                    description=description,
                    description_html="".join(f"<p>{escape(part)}</p>" for part in body),
                    category=category,
                    tags=tags,
                    tags_text=" ".join(tags).replace("-", " "),
                    icon=rng.choice(ICONS),
                    publisher=rng.choices(publishers, weights=publisher_weights)[0],
                    pricing_model=pricing,
                    price=price,
                    currency=currency,
                    visibility=Visibility.PRIVATE if private else Visibility.PUBLIC,
                    state=Blueprint.State.LISTED,
                    certified=certified,
                    rating_count=rating_count,
                    rating_sum=rating_sum,
                    rating_avg=rating_avg,
                    install_count=max(installs, 0),
                    created_at=published_at - timedelta(days=rng.uniform(0, 30)),
                    updated_at=published_at + (now - published_at) * rng.random(),
                    published_at=published_at,
                )
            )
            certified_flags.append(certified)
            if (i + 1) % 2500 == 0:
                print(f"generated {i + 1}/{count} blueprints", flush=True)

        Blueprint.objects.bulk_create(blueprints, batch_size=1000)
        BlueprintVersion.objects.bulk_create(
            (
                BlueprintVersion(
                    blueprint=blueprint,
                    version=f"1.{minor}.{patch}",
                    major=1,
                    minor=minor,
                    patch=patch,
                    is_release=True,
                    changelog=f"1.{minor}.{patch}\n- Improvements and fixes.",
                    instructions=f"You are {blueprint.name}. {blueprint.summary}",
                    provider=BlueprintVersion.Provider.LOCAL,
                    model="local",
                    settings_schema={"type": "object", "properties": {}},
                    state=(
                        BlueprintVersion.State.CERTIFIED
                        if certified
                        else BlueprintVersion.State.EXPERIMENTAL
                    ),
                    created_by="bench",
                    created_at=blueprint.published_at or now,
                    state_changed_at=blueprint.published_at or now,
                )
                for blueprint, certified, minor, patch in (
                    (b, c, rng.randint(0, 9), rng.randint(0, 20))
                    for b, c in zip(blueprints, certified_flags, strict=True)
                )
            ),
            batch_size=2000,
        )
        Blueprint.allowed_tenants.through.objects.bulk_create(
            Blueprint.allowed_tenants.through(
                blueprint_id=blueprints[i].pk, tenant_id=bench_tenant.pk
            )
            for i in private_allowed
        )

        # What services._index_terms does for each published blueprint, for all at once.
        terms: set[str] = set()
        for blueprint in blueprints:
            terms.update(
                words_of(" ".join([blueprint.name, blueprint.summary, blueprint.tags_text]))
            )
        SearchTerm.objects.bulk_create(
            [SearchTerm(term=term, trigrams=term_trigrams(term)) for term in sorted(terms)],
            ignore_conflicts=True,
            batch_size=2000,
        )

    # A catalog in service has been vacuumed (which also empties the GIN pending lists that bulk
    # inserts fill) and analysed by autovacuum; do the same before measuring.
    with connection.cursor() as cursor:
        for table in (
            "marketplace_publisher",
            "marketplace_blueprint",
            "marketplace_blueprint_allowed_tenants",
            "marketplace_blueprintversion",
            "marketplace_searchterm",
        ):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    counts = Counter(b.publisher.slug for b in blueprints)
    ranked = [slug for slug, _n in counts.most_common()]
    return CatalogFacts(
        blueprints=Blueprint.objects.count(),
        publishers=Publisher.objects.count(),
        search_terms=SearchTerm.objects.count(),
        certified=sum(certified_flags),
        private=sum(1 for b in blueprints if b.visibility == Visibility.PRIVATE),
        seconds=_ms(start) / 1000,
        big_publisher=ranked[0],
        small_publisher=ranked[len(ranked) // 2],
    )


# --------------------------------------------------------------------------------------------
# The query mix


@dataclass(frozen=True)
class MixQuery:
    kind: str
    label: str
    params: dict[str, str]


KINDS = ("browse", "text", "typo", "filter", "text+filter", "sort", "page 2+")


def query_mix(big_publisher: str, small_publisher: str) -> list[MixQuery]:
    def q(kind: str, label: str, **params: str) -> MixQuery:
        return MixQuery(kind, label, params)

    return [
        q("browse", "browse"),
        q("browse", "browse page_size=50", page_size="50"),
        q("text", "text customer support", q="customer support"),
        q("text", "text sql", q="sql"),
        q("text", "text invoice analysis", q="invoice analysis"),
        q("text", "text meeting notes", q="meeting notes"),
        q("text", "text gdpr contract review", q="gdpr contract review"),
        q("text", "text onboarding", q="onboarding"),
        q("text", "text email", q="email"),
        q("typo", "typo custmer suport", q="custmer suport"),
        q("typo", "typo helpdsk", q="helpdsk"),
        q("typo", "typo analitics", q="analitics"),
        q("typo", "typo translater", q="translater"),
        q("typo", "typo invoce", q="invoce"),
        q("typo", "typo recruting", q="recruting"),
        q("filter", "filter category=data", category="data"),
        q("filter", "filter pricing=free", pricing="free"),
        q("filter", "filter tag=faq", tag="faq"),
        q("filter", "filter publisher (largest)", publisher=big_publisher),
        q("filter", "filter publisher (median)", publisher=small_publisher),
        q("filter", "filter certified", certified="true"),
        q("filter", "filter it+monthly+certified", category="it", pricing="monthly", certified="true"),
        q("filter", "filter tag=gdpr+per_message", tag="gdpr", pricing="per_message"),
        q(
            "text+filter",
            "text+filter customer support, customer-support, certified",
            q="customer support",
            category="customer-support",
            certified="true",
        ),
        q("text+filter", "text+filter sql, free", q="sql", pricing="free"),
        q(
            "text+filter",
            EXPLAINED_LABEL,
            q="custmer suport",
            category="customer-support",
            certified="true",
        ),
        q(
            "text+filter",
            "text+filter analytics, publisher, sort=rating",
            q="analytics",
            publisher=big_publisher,
            sort="rating",
        ),
        q("text+filter", "text+filter email, tag=slack", q="email", tag="slack"),
        q("sort", "sort=popularity", sort="popularity"),
        q("sort", "sort=rating", sort="rating"),
        q("sort", "sort=newest", sort="newest"),
        q("sort", "sort=name", sort="name"),
        q("sort", "text translation sort=newest", q="translation", sort="newest"),
        q("sort", "text assistant sort=name", q="assistant", sort="name"),
        q("page 2+", "page=2", page="2"),
        q("page 2+", "page=5 sort=rating", page="5", sort="rating"),
        q("page 2+", "page=50 sort=newest", page="50", sort="newest"),
        q("page 2+", "text assistant page=3", q="assistant", page="3"),
        q("page 2+", "category=sales page=2", category="sales", page="2"),
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# HTTP (a real server process, as bench/tenants.py)


@dataclass
class Answer:
    count: int
    corrected: dict[str, list[str]]


@dataclass
class HttpResult:
    first_ms: dict[str, float]  # label -> its first request after the server started
    cold_ms: dict[str, list[float]]  # label -> requests right after a catalog change
    warm_ms: dict[str, list[float]]  # label -> requests with the facet counts cached
    answers: dict[str, Answer]
    baseline_ms: list[float]
    warm_seconds: float  # from filling the cache to the end of the warm requests


def touch_catalog() -> None:
    """What any listing change does to cached facet counts: one blueprint's ``updated_at`` moves
    to now, so ``catalog_stamp()`` changes and every facet cache key of every query misses."""
    from django.db.models.functions import Now

    from apps.marketplace.models import Blueprint

    first = Blueprint.objects.order_by("pk").values_list("pk", flat=True)[:1]
    if Blueprint.objects.filter(pk__in=first).update(updated_at=Now()) != 1:
        raise RuntimeError("no blueprint to touch")


def run_http(
    base_url: str,
    tenant: BenchTenant,
    mix: list[MixQuery],
    requests: int,
    cold_rounds: int,
    seed: int,
) -> HttpResult:
    headers = {
        "Host": tenant.host,
        "Accept": "application/json",
        "Authorization": f"Bearer {tenant.api_key}",
    }
    answers: dict[str, Answer] = {}
    first_ms: dict[str, float] = {}
    cold_ms: dict[str, list[float]] = {m.label: [] for m in mix}
    warm_ms: dict[str, list[float]] = {m.label: [] for m in mix}
    baseline_ms: list[float] = []
    rng = random.Random(seed)

    def shuffled() -> list[MixQuery]:
        # Every query of the mix in a shuffled order that is the same on every run, so no query
        # always follows the same one.
        order = list(mix)
        rng.shuffle(order)
        return order

    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:

        def search(item: MixQuery) -> float:
            start = time.perf_counter_ns()
            response = client.get(SEARCH_PATH, params=item.params)
            elapsed = _ms(start)
            body = _check(response).json()
            answers[item.label] = Answer(int(body["count"]), dict(body["corrected"]))
            return elapsed

        for _ in range(SERVER_WARMUP_REQUESTS):
            _check(client.get(BASELINE_PATH))
        # The first request of each query. Queries that differ only in sort or page share their
        # facet counts, so the catalog is touched before each one to make every one a miss.
        for item in shuffled():
            touch_catalog()
            first_ms[item.label] = search(item)
        for _ in range(WARMUP_ROUNDS):
            for item in mix:
                search(item)
        for _ in range(BASELINE_REQUESTS):
            start = time.perf_counter_ns()
            response = client.get(BASELINE_PATH)
            baseline_ms.append(_ms(start))
            _check(response)

        # Facet-cache misses with a warm server: every request right after a catalog change.
        for _ in range(cold_rounds):
            for item in shuffled():
                touch_catalog()
                cold_ms[item.label].append(search(item))
        # Fill the cache for the warm requests (the cold rounds left only the last one cached).
        filled = time.monotonic()
        for item in mix:
            search(item)
        order = shuffled()
        for i in range(requests):
            item = order[i % len(order)]
            warm_ms[item.label].append(search(item))
        warm_seconds = time.monotonic() - filled
    return HttpResult(
        first_ms=first_ms,
        cold_ms=cold_ms,
        warm_ms=warm_ms,
        answers=answers,
        baseline_ms=baseline_ms,
        warm_seconds=warm_seconds,
    )


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response


# --------------------------------------------------------------------------------------------
# In process: the statements of catalog_search, timed and explained


ROLES_ORDER = (
    "set search_path",
    "catalog policy",
    "typo corrections",
    "publisher by slug",
    "catalog stamp",
    "facets: dimensions",
    "facets: tags",
    "publisher labels",
    "results",
    "other",
)


def statement_role(statement: str) -> str:
    if statement.startswith("SET search_path"):
        return "set search_path"  # django-tenants, on every new cursor
    if "marketplace_catalogpolicy" in statement:
        return "catalog policy"
    if "marketplace_searchterm" in statement:
        return "typo corrections"
    if 'MAX("marketplace_blueprint"."updated_at")' in statement:
        return "catalog stamp"  # part of the facet cache key, on every search
    if "GROUPING SETS" in statement:
        return "facets: dimensions"
    if "unnest(b.tags)" in statement:
        return "facets: tags"
    if '"marketplace_publisher"."slug" =' in statement:
        return "publisher by slug"
    if statement.lstrip().startswith("SELECT") and 'FROM "marketplace_publisher"' in statement:
        return "publisher labels"
    if 'FROM "marketplace_blueprint"' in statement:
        return "results"
    return "other"


FACET_ROLES = frozenset({"facets: dimensions", "facets: tags"})


@dataclass
class Statement:
    role: str
    sql: str
    params: Any
    ms: float


@dataclass
class InProcessResult:
    # "cold": right after a catalog change (facet counts computed); "warm": the same query again
    # (facet counts from the cache).
    total_ms: dict[str, dict[str, list[float]]]  # cold/warm -> label -> catalog_search wall time
    by_role: dict[str, dict[str, list[float]]]  # cold/warm -> role -> statement wall time
    statements: dict[str, list[Statement]]  # label -> the statements of its last cold run


@contextmanager
def captured(sink: list[Statement]) -> Iterator[None]:
    from django.db import connection

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        start = time.perf_counter_ns()
        try:
            return execute(sql, params, many, context)
        finally:
            sink.append(Statement(statement_role(sql), sql, params, _ms(start)))

    with connection.execute_wrapper(wrapper):
        yield


def run_in_process(tenant: BenchTenant, mix: list[MixQuery]) -> InProcessResult:
    from django_tenants.utils import schema_context

    from apps.marketplace.forms import CatalogSearchForm
    from apps.marketplace.selectors import CatalogQuery, catalog_search
    from apps.tenants.models import Tenant

    phases = ("cold", "warm")
    total_ms: dict[str, defaultdict[str, list[float]]] = {p: defaultdict(list) for p in phases}
    by_role: dict[str, defaultdict[str, list[float]]] = {p: defaultdict(list) for p in phases}
    statements: dict[str, list[Statement]] = {}
    with schema_context(tenant.schema_name):
        row = Tenant.objects.get(schema_name=tenant.schema_name)
        queries: list[tuple[MixQuery, CatalogQuery]] = []
        for item in mix:
            form = CatalogSearchForm(item.params)
            if not form.is_valid():
                raise RuntimeError(f"{item.label}: {form.errors.as_json()}")
            queries.append((item, form.to_query()))
        for round_no in range(INPROCESS_ROUNDS + 1):
            for item, query in queries:
                touch_catalog()
                for phase in phases:
                    sink: list[Statement] = []
                    start = time.perf_counter_ns()
                    with captured(sink):
                        catalog_search(tenant=row, query=query)
                    elapsed = _ms(start)
                    # The bench relies on this: a catalog change misses, the repeat hits.
                    roles = {statement.role for statement in sink}
                    expected = phase == "cold"
                    if (
                        roles >= FACET_ROLES if expected else bool(roles & FACET_ROLES)
                    ) != expected:
                        raise RuntimeError(
                            f"{item.label}: facet counts {'not ' if expected else ''}computed "
                            f"on a {phase} run; the facet cache is not what the bench assumes"
                        )
                    if round_no == 0:
                        continue  # warm-up
                    total_ms[phase][item.label].append(elapsed)
                    for statement in sink:
                        by_role[phase][statement.role].append(statement.ms)
                    if phase == "cold":
                        statements[item.label] = sink
    return InProcessResult(
        {phase: dict(v) for phase, v in total_ms.items()},
        {phase: dict(v) for phase, v in by_role.items()},
        statements,
    )


_ACCESS = (
    re.compile(r"(Index Only Scan|Index Scan)(?: Backward)? using (\S+) on (\S+)"),
    re.compile(r"(Bitmap Index Scan) on (\S+)"),
    re.compile(r"(Seq Scan) on (\S+)"),
)
_EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")


def access_paths(plan: str) -> list[str]:
    """The scans of a text plan: which indexes are used, which tables read in full."""
    found: list[str] = []
    for line in plan.splitlines():
        for pattern in _ACCESS:
            match = pattern.search(line)
            if match is None:
                continue
            kind = match.group(1)
            if kind in ("Index Scan", "Index Only Scan"):
                found.append(f"{kind} {match.group(2)}")
            elif kind == "Bitmap Index Scan":
                found.append(f"Bitmap Index Scan {match.group(2)}")
            else:
                found.append(f"Seq Scan {match.group(2)}")
            break
    return list(dict.fromkeys(found))


def explain(statement: Statement, *, buffers: bool) -> str:
    from django.db import connection

    options = "ANALYZE, BUFFERS" if buffers else "ANALYZE"
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ({options}) {statement.sql}", statement.params)
        return "\n".join(str(row[0]) for row in cursor.fetchall())


@dataclass
class PlanResult:
    explained_label: str
    full_plans: list[tuple[str, str]]  # (role, plan) of the explained query
    paths_by_role: dict[str, Counter[str]]  # role -> access path -> number of queries
    execution_ms: dict[str, list[float]]  # role -> EXPLAIN ANALYZE execution time
    queries_explained: int


def run_plans(tenant: BenchTenant, inproc: InProcessResult) -> PlanResult:
    from django_tenants.utils import schema_context

    wanted = ("typo corrections", "catalog stamp", "facets: dimensions", "facets: tags", "results")
    full_plans: list[tuple[str, str]] = []
    paths_by_role: dict[str, Counter[str]] = defaultdict(Counter)
    execution_ms: dict[str, list[float]] = defaultdict(list)
    with schema_context(tenant.schema_name):
        for statement in inproc.statements[EXPLAINED_LABEL]:
            if statement.role in wanted:
                full_plans.append((statement.role, explain(statement, buffers=True)))
        for statements in inproc.statements.values():
            for statement in statements:
                if statement.role == "set search_path":
                    continue
                plan = explain(statement, buffers=False)
                for path in access_paths(plan) or ["(no table scan)"]:
                    paths_by_role[statement.role][path] += 1
                match = _EXECUTION.search(plan)
                if match:
                    execution_ms[statement.role].append(float(match.group(1)))
    return PlanResult(
        explained_label=EXPLAINED_LABEL,
        full_plans=full_plans,
        paths_by_role=dict(paths_by_role),
        execution_ms=dict(execution_ms),
        queries_explained=len(inproc.statements),
    )


# --------------------------------------------------------------------------------------------
# Report


def _machine_facts(database: BenchDatabase) -> list[tuple[str, str]]:
    import django
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        row = cursor.fetchone()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("nproc", str(affinity)),
        ("cpu", platform.processor() or platform.machine()),
        ("os", platform.platform()),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("django", django.get_version()),
        ("postgresql", str(row[0]) if row else "?"),
        ("database", database.description),
        ("settings", f"{os.environ['DJANGO_SETTINGS_MODULE']} (DEBUG={settings.DEBUG})"),
        ("pool", os.environ.get("DATABASE_POOL_MAX_SIZE", "0 (default: no pool)")),
        ("cache", _cache_description()),
        # Other work on the machine shows here; the figures are only as quiet as the machine.
        ("load average", " ".join(f"{n:.2f}" for n in os.getloadavg())),
    ]


def _cache_description() -> str:
    from django.conf import settings

    backend = str(settings.CACHES["default"]["BACKEND"]).rsplit(".", 1)[-1]
    where = (
        "shared by the server and this process"
        if "Redis" in backend
        else "one per process (the server's is its own)"
    )
    return f"{backend}, {where}, key prefix {os.environ.get('CACHE_KEY_PREFIX', '')}"


def _row(cells: Sequence[str], widths: Sequence[int], left: frozenset[int]) -> str:
    return "  ".join(
        cell.ljust(width) if i == 0 or i in left else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: frozenset[int] = frozenset()
) -> str:
    """A plain-text table; the first column (and those in ``left``) aligned left."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths, left), _row(["-" * w for w in widths], widths, left)]
    lines.extend(_row(row, widths, left) for row in rows)
    return "\n".join(lines)


def _figures(values: Sequence[float]) -> list[str]:
    s = Summary.of(values)
    return [str(s.count), f"{s.p50:.2f}", f"{s.p95:.2f}", f"{s.max:.2f}"]


def _corrections(corrected: dict[str, list[str]]) -> str:
    return "; ".join(f"{word}→{'|'.join(terms)}" for word, terms in corrected.items()) or "-"


def _kind_table(mix: list[MixQuery], timings: dict[str, list[float]]) -> tuple[str, Summary]:
    rows = []
    for kind in KINDS:
        labels = [m.label for m in mix if m.kind == kind]
        values = [ms for label in labels for ms in timings[label]]
        if values:
            rows.append([kind, str(len(labels)), *_figures(values)])
    every = [ms for values in timings.values() for ms in values]
    rows.append(["overall", str(len(mix)), *_figures(every)])
    header = ["kind", "queries", "requests", "p50 ms", "p95 ms", "max ms"]
    return _table(header, rows), Summary.of(every)


def _verdict(summary: Summary) -> str:
    return f"{summary.p95:.2f} ms {'PASS' if summary.p95 < TARGET_P95_MS else 'FAIL'}"


def report(
    catalog: CatalogFacts,
    mix: list[MixQuery],
    http: HttpResult,
    inproc: InProcessResult,
    plans: PlanResult,
    facts: list[tuple[str, str]],
) -> bool:
    from apps.marketplace.selectors import FACET_CACHE_SECONDS

    print()
    print("=" * 78)
    print(
        f"Catalog: {catalog.blueprints} blueprints ({catalog.certified} certified, "
        f"{catalog.private} private) of {catalog.publishers} publishers, "
        f"{catalog.search_terms} search terms; generated in {catalog.seconds:.1f} s"
    )

    cold_rounds = len(next(iter(http.cold_ms.values())))
    print()
    print("=" * 78)
    print(
        f"HTTP: GET {SEARCH_PATH} on a real server (manage.py serve, uvicorn), one keep-alive "
        f"client, API key; {len(mix)} queries"
    )
    warm_table, warm = _kind_table(mix, http.warm_ms)
    cold_table, cold = _kind_table(mix, http.cold_ms)
    first_table, first = _kind_table(mix, {k: [v] for k, v in http.first_ms.items()})
    print()
    print(
        f"Warm: facet counts cached; {warm.count} requests after the cold rounds "
        f"({http.warm_seconds:.0f} s, cache lifetime {FACET_CACHE_SECONDS} s)"
    )
    print()
    print(warm_table)
    if http.warm_seconds > FACET_CACHE_SECONDS:
        print(
            "note: the warm requests outlasted the facet cache lifetime; the latest of them "
            "include misses"
        )
    print()
    print(
        f"Cold: facet cache miss; {cold_rounds} rounds of the mix, each request right after a "
        "catalog change (catalog_stamp() moved), server warm"
    )
    print()
    print(cold_table)
    print()
    print(
        "First request of each query after the server started (facet cache miss; the server "
        "warmed by a few non-search requests only)"
    )
    print()
    print(first_table)
    baseline = Summary.of(http.baseline_ms)
    print()
    print(
        f"baseline GET {BASELINE_PATH} (same host and key; routing, auth, DRF, no search): "
        f"p50 {baseline.p50:.2f} ms, p95 {baseline.p95:.2f} ms"
    )
    passed = warm.p95 < TARGET_P95_MS and cold.p95 < TARGET_P95_MS
    print()
    print(f"target: p95 < {TARGET_P95_MS:.0f} ms over the mix")
    print(f"  warm (facet cache hit):   {_verdict(warm)}")
    print(f"  cold (facet cache miss):  {_verdict(cold)}")
    print(f"  first requests:           {_verdict(first)} (one sample per query)")
    print(f"  overall (warm and cold):  {'PASS' if passed else 'FAIL'}")

    print()
    print("=" * 78)
    print(
        "Per query (HTTP ms: warm, cold, first request; in-process catalog_search p50 ms, "
        "inside the tenant's schema, cold and warm)"
    )
    print()
    rows = []
    for item in mix:
        w = Summary.of(http.warm_ms[item.label])
        c = Summary.of(http.cold_ms[item.label])
        answer = http.answers[item.label]
        rows.append(
            [
                item.label,
                str(answer.count),
                f"{w.p50:.1f}",
                f"{w.p95:.1f}",
                f"{c.p50:.1f}",
                f"{c.max:.1f}",
                f"{http.first_ms[item.label]:.1f}",
                f"{statistics.median(inproc.total_ms['cold'][item.label]):.1f}",
                f"{statistics.median(inproc.total_ms['warm'][item.label]):.1f}",
                _corrections(answer.corrected),
            ]
        )
    header = [
        "query",
        "count",
        "warm p50",
        "warm p95",
        "cold p50",
        "cold max",
        "first",
        "in-proc cold",
        "in-proc warm",
        "corrected",
    ]
    print(_table(header, rows, left=frozenset({9})))

    print()
    print("=" * 78)
    print(
        f"Where the time goes: the statements of catalog_search, {INPROCESS_ROUNDS} rounds of the "
        "mix in process, each query right after a catalog change (cold) then again (warm); wall "
        "ms per statement, share of the cold time; EXPLAIN ANALYZE execution ms of the cold "
        "statements"
    )
    print()
    cold_roles, warm_roles = inproc.by_role["cold"], inproc.by_role["warm"]
    grand = sum(sum(v) for v in cold_roles.values())
    rows = []
    for role in ROLES_ORDER:
        runs = cold_roles.get(role)
        if not runs:
            continue
        executed = plans.execution_ms.get(role, [])
        warm_runs = warm_roles.get(role, [])
        rows.append(
            [
                role,
                *_figures(runs),
                f"{sum(runs) / grand * 100:.0f}%",
                str(len(warm_runs)),
                f"{statistics.median(warm_runs):.2f}" if warm_runs else "-",
                f"{statistics.median(executed):.2f}" if executed else "-",
                f"{max(executed):.2f}" if executed else "-",
            ]
        )
    header = [
        "statement",
        "cold runs",
        "p50",
        "p95",
        "max",
        "share",
        "warm runs",
        "warm p50",
        "exec p50",
        "exec max",
    ]
    print(_table(header, rows))
    print()
    for phase in ("cold", "warm"):
        totals = [ms for values in inproc.total_ms[phase].values() for ms in values]
        s = Summary.of(totals)
        print(
            f"catalog_search in process, {phase} (statements + Python): p50 {s.p50:.2f} ms, "
            f"p95 {s.p95:.2f} ms, max {s.max:.2f} ms"
        )

    print()
    print("=" * 78)
    explained = next(m for m in mix if m.label == plans.explained_label)
    print(
        f"Query plans (EXPLAIN (ANALYZE, BUFFERS), cold run) for "
        f"{SEARCH_PATH}?{_qs(explained.params)}"
    )
    for role, plan in plans.full_plans:
        print()
        print(f"--- {role} ---")
        print(plan)
    print()
    print("Index use in these plans:")
    width = max(len(role) for role, _plan in plans.full_plans)
    for role, plan in plans.full_plans:
        print(f"  {role.ljust(width)}  {', '.join(access_paths(plan)) or '(no table scan)'}")
    print()
    print(
        f"Index use over the whole mix ({plans.queries_explained} queries, cold runs; "
        "how many queries' plan has each scan):"
    )
    for role in ROLES_ORDER:
        paths = plans.paths_by_role.get(role)
        if not paths:
            continue
        listed = ", ".join(f"{path} ×{n}" for path, n in paths.most_common())
        print(f"  {role.ljust(18)}  {listed}")

    print()
    print("=" * 78)
    print("Machine")
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        print(f"  {name.ljust(width)}  {value}")
    print("=" * 78)
    return passed


def _qs(params: dict[str, str]) -> str:
    return str(httpx.QueryParams(params))


# --------------------------------------------------------------------------------------------
# Entry point


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--blueprints",
        type=_positive,
        default=10_000,
        help="blueprints to generate (default 10000)",
    )
    parser.add_argument(
        "--requests",
        type=_positive,
        default=600,
        help="timed warm search requests over the query mix (default 600)",
    )
    parser.add_argument(
        "--cold-rounds",
        type=_positive,
        default=3,
        help="rounds of the mix right after a catalog change, facet cache missed (default 3)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--keep",
        "--keep-db",
        dest="keep",
        action="store_true",
        help="keep the bench database (or DATA_DIR) at the end",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    database = prepare_environment(args.keep)
    print(f"bench database: {database.description}", flush=True)
    passed = False
    try:
        setup_django()
        tenant = bootstrap_and_tenant()
        print(f"generating {args.blueprints} blueprints...", flush=True)
        catalog = generate_catalog(args.blueprints, args.seed)
        print(f"catalog: done in {catalog.seconds:.1f} s", flush=True)
        mix = query_mix(catalog.big_publisher, catalog.small_publisher)
        print(
            f"HTTP: starting the server, {args.cold_rounds} cold rounds, "
            f"{args.requests} warm requests...",
            flush=True,
        )
        with product_server(HEALTH_PATH) as base_url:
            http = run_http(base_url, tenant, mix, args.requests, args.cold_rounds, args.seed)
        print("in process: timing and explaining the statements of catalog_search...", flush=True)
        inproc = run_in_process(tenant, mix)
        plans = run_plans(tenant, inproc)
        passed = report(catalog, mix, http, inproc, plans, _machine_facts(database))
    finally:
        finish(database, keep=args.keep)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
