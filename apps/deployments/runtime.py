"""The bridge from a deployment to the runtime: what an agent needs to answer, and the record of
what each call cost and how it failed. Sync code (ORM); the engine itself is async."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.utils.translation import gettext as _

from apps.accounts.permissions import has_permission
from apps.core.exceptions import Conflict, Forbidden, ServiceError
from apps.core.sqlfast import insert, rows, table
from apps.deployments.models import (
    Deployment,
    DeploymentDocument,
    DeploymentSecret,
    ProviderFailure,
    RuntimeCall,
    ToolPolicy,
)
from apps.deployments.services import stored_secrets
from apps.marketplace.models import BlueprintVersion
from apps.runtime.engine import AgentSpec, InputRefused, ReplyRevised, redacted_input, run_turn
from apps.runtime.guardrails import GuardrailConfig
from apps.runtime.ratelimit import rate_limit_hit
from apps.runtime.selection import choose_fallback, choose_provider
from apps.runtime.tools import KnowledgeDoc
from apps.runtime.types import ProviderError, TextDelta, ToolResult, Usage
from apps.tenants.db import connection


def serving_check(deployment: Deployment) -> None:
    """Refuse, with a message a person can act on, a deployment that cannot answer now."""
    if deployment.version.state == BlueprintVersion.State.RETIRED:
        raise Conflict(
            _(
                "Version %(version)s of this agent is retired and no longer answers. Ask an admin "
                "to upgrade the deployment."
            )
            % {"version": deployment.version.version},
            code="version_retired",
        )
    if deployment.status != Deployment.Status.ACTIVE:
        messages: dict[str, str] = {
            Deployment.Status.PAUSED: _("This agent is paused. Ask an operator to resume it."),
            Deployment.Status.CONFIGURING: _("This agent is starting. Try again in a moment."),
            Deployment.Status.ERROR: _("This agent could not start: %(reason)s")
            % {"reason": deployment.status_reason},
        }
        raise Conflict(
            messages.get(deployment.status, _("This agent is not available.")),
            code=f"deployment_{deployment.status}",
        )


# Specs built in this process, by (schema, deployment): rebuilding one costs four queries and the
# decryption of its secrets, on every message. Each is stored with the stamp it was built from.
SPEC_CACHE_SIZE = 512
_specs: OrderedDict[tuple[str, int], tuple[tuple[Any, ...], AgentSpec]] = OrderedDict()
_specs_lock = threading.Lock()


def stamp_columns(d: str) -> str:
    """SQL for the columns of a deployment's spec stamp, ``d`` being the deployment's alias: what
    a cached spec depends on besides the version (immutable once published): the deployment's
    row, its secrets, its uploaded documents and the tool policy."""
    secret, document, policy = table(DeploymentSecret), table(DeploymentDocument), table(ToolPolicy)
    return f"""
        {d}.version_id, {d}.updated_at, {d}.fallback_provider, {d}.settings::text,
        (SELECT count(*) || ':' || coalesce(max(s.updated_at)::text, '')
           FROM {secret} s WHERE s.deployment_id = {d}.id),
        (SELECT count(*) || ':' || coalesce(max(dd.id), 0)
           FROM {document} dd WHERE dd.deployment_id = {d}.id),
        (SELECT p.id || ':' || p.allow_private_addresses || ':' || p.allowed_hosts::text
           FROM {policy} p ORDER BY p.updated_at DESC, p.id DESC LIMIT 1)
    """  # noqa: S608 - table names from the models


STAMP_WIDTH = 7


def spec_stamp(deployment_id: int) -> tuple[Any, ...] | None:
    found = rows(
        f"SELECT {stamp_columns('d')} FROM {table(Deployment)} d WHERE d.id = %s",  # noqa: S608
        [deployment_id],
    )
    return tuple(found[0]) if found else None


def agent_spec_cached(schema: str, deployment_id: int, stamp: tuple[Any, ...]) -> AgentSpec | None:
    """The spec this process built for the deployment, if it was built from ``stamp``; no query
    (the event loop may call it)."""
    key = (schema, deployment_id)
    with _specs_lock:
        cached = _specs.get(key)
        if cached is None or cached[0] != stamp:
            return None
        _specs.move_to_end(key)
        return cached[1]


def agent_spec_current(deployment: Deployment) -> AgentSpec:
    """``agent_spec``, from this process's cache when nothing it depends on has changed. The
    stamp comes with the deployment (``deployment.spec_stamp``, see ``apps.conversations.selectors.admission_sql``) or is
    read here (one query); when the spec must be built, the deployment is read again."""
    stamp: tuple[Any, ...] | None = getattr(deployment, "spec_stamp", None) or spec_stamp(
        deployment.pk
    )
    if stamp is None:  # the deployment is gone: nothing to cache
        return agent_spec(deployment)
    key = (connection.schema_name, deployment.pk)
    cached = agent_spec_cached(key[0], deployment.pk, stamp)
    if cached is not None:
        return cached
    # Built from the rows as they are now, read after the stamp: a change committed between the
    # caller's read and the stamp's cannot be cached under the newer stamp.
    deployment = Deployment.objects.select_related("version").get(pk=deployment.pk)
    spec = agent_spec(deployment)
    with _specs_lock:
        _specs[key] = (stamp, spec)
        _specs.move_to_end(key)
        while len(_specs) > SPEC_CACHE_SIZE:
            _specs.popitem(last=False)
    return spec


def agent_spec(deployment: Deployment) -> AgentSpec:
    version = deployment.version
    secrets = stored_secrets(deployment)
    documents = [KnowledgeDoc(doc.title, doc.content) for doc in version.documents.all()] + [
        KnowledgeDoc(doc.title, doc.content) for doc in deployment.documents.all()
    ]
    policy = ToolPolicy.objects.first()
    return AgentSpec(
        deployment_id=deployment.pk,
        tenant_key=connection.schema_name,
        instructions=version.instructions,
        provider=choose_provider(
            provider=version.provider,
            model=version.model,
            secrets=secrets,
            settings=deployment.settings,
        ),
        fallback=choose_fallback(
            fallback=deployment.fallback_provider,
            secrets=secrets,
            settings=deployment.settings,
            model=version.model,
        ),
        parameters=dict(version.parameters),
        tools=tuple(version.tools),
        guardrails=GuardrailConfig.from_blueprint(version.guardrails),
        documents=tuple(documents),
        allowed_hosts=frozenset(policy.allowed_hosts) if policy else frozenset(),
        allow_private=bool(policy and policy.allow_private_addresses),
    )


def runtime_call(
    *,
    deployment_id: int,
    user_id: int | None,
    usage: Usage | None,
    error: ProviderError | None = None,
    provider: str = "",
    model: str = "",
) -> RuntimeCall:
    """The record of one turn, unsaved."""
    return RuntimeCall(
        deployment_id=deployment_id,
        user_id=user_id,
        provider=usage.provider if usage else provider,
        model=usage.model if usage else model,
        outcome=RuntimeCall.Outcome.FAILED if error else RuntimeCall.Outcome.OK,
        error_kind=error.kind if error else "",
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        latency_ms=usage.latency_ms if usage else 0,
    )


def runtime_call_record(*, deployment: Deployment, **fields: Any) -> RuntimeCall:
    """Store the record of one turn (``runtime_call``'s fields); on every message, so without
    the ORM's compiler (apps/core/sqlfast.py)."""
    return insert(runtime_call(deployment_id=deployment.pk, **fields))


def provider_failure_record(
    *, deployment: Deployment, error: ProviderError, attempt: int, provider: str
) -> None:
    ProviderFailure.objects.create(
        deployment=deployment,
        provider=provider,
        kind=error.kind,
        attempt=attempt,
        message=str(error.message)[:500],
    )


def failure_hook(deployment: Deployment, sink: list[Any]) -> Any:
    """An ``on_failure`` for the engine that collects failures (recorded after the turn, from
    sync code: the hook runs inside the event loop, where the ORM may not be used)."""

    def hook(error: ProviderError, attempt: int, provider: str) -> None:
        sink.append((error, attempt, provider))

    return hook


@dataclass
class Answer:
    text: str = ""
    usage: Usage | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    refused: InputRefused | None = None
    offline: bool = False


def deployment_ask(*, deployment: Deployment, user: Any, text: str) -> Answer:
    """One question, one answer, nothing stored but the usage: the API's quick way to try an
    agent (conversations keep history and stream; see apps/conversations)."""
    # Conversations count the plan's messages and keep the usage rows (imported here: that app
    # builds on this one).
    from apps.conversations.quota import message_quota_hit
    from apps.conversations.services import usage_record

    _require_chat(user)
    serving_check(deployment)
    rate_limit_hit(user_id=user.pk, deployment_id=deployment.pk)
    spec = agent_spec(deployment)
    if not isinstance(redacted_input(spec, text), InputRefused):  # refusals are not messages
        message_quota_hit()
        usage_record(deployment=deployment, user_id=user.pk, messages=1)
    failures: list[Any] = []
    answer = Answer(offline=spec.provider.offline)

    async def turn() -> None:
        parts: list[str] = []
        async for event in run_turn(spec, [], text, on_failure=failure_hook(deployment, failures)):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, ToolResult):
                answer.tool_calls.append(
                    {
                        "tool": event.call.name,
                        "arguments": event.call.arguments,
                        "error": event.error,
                    }
                )
            elif isinstance(event, ReplyRevised):
                parts = [event.text]
            elif isinstance(event, InputRefused):
                answer.refused = event
            elif isinstance(event, Usage):
                answer.usage = event
        answer.text = "".join(parts)

    try:
        async_to_sync(turn)()
    except ProviderError as error:
        for failed, attempt, provider in failures:
            provider_failure_record(
                deployment=deployment, error=failed, attempt=attempt, provider=provider
            )
        runtime_call_record(
            deployment=deployment,
            user_id=user.pk,
            usage=None,
            error=error,
            provider=spec.provider.name,
            model=spec.provider.model,
        )
        raise ProviderUnavailable(
            _("The agent's provider failed (%(kind)s). Your message was not answered; try again.")
            % {"kind": error.kind},
            details={"kind": error.kind, "retryable": error.retryable},
        ) from None
    for failed, attempt, provider in failures:
        provider_failure_record(
            deployment=deployment, error=failed, attempt=attempt, provider=provider
        )
    if answer.refused is None:
        runtime_call_record(deployment=deployment, user_id=user.pk, usage=answer.usage)
        if answer.usage is not None:
            usage_record(
                deployment=deployment,
                user_id=user.pk,
                tokens_in=answer.usage.input_tokens,
                tokens_out=answer.usage.output_tokens,
            )
    return answer


class ProviderUnavailable(ServiceError):
    status = 503
    code = "provider_failed"


def _require_chat(user: Any) -> None:
    if not has_permission(user, "chat:use"):
        raise Forbidden(_("Your role does not allow this."), details={"permission": "chat:use"})
