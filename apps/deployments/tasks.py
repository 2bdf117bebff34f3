"""Background work for deployments: the start check after a deploy, resume or key change."""

from __future__ import annotations

import asyncio

from celery import shared_task
from django.utils.translation import gettext as _

from apps.core.tasks import TenantTask
from apps.deployments.models import Deployment
from apps.deployments.services import deployment_started, stored_secrets
from apps.runtime.selection import ProviderChoice, choose_provider
from apps.runtime.types import (
    AuthError,
    ChatMessage,
    ProviderError,
    ProviderRequest,
    ProviderTimeout,
    Unavailable,
)

PROBE_TIMEOUT = 15.0


def start_problem(choice: ProviderChoice) -> str:
    """Why ``choice`` cannot serve, in words the person who configured it can act on; empty when
    it can. The offline provider always can; a cloud provider gets one tiny request."""
    if choice.offline:
        return ""
    from apps.runtime.providers.registry import provider_for

    provider = provider_for(choice.name, api_key=choice.api_key, base_url=choice.base_url)
    request = ProviderRequest(
        model=choice.model,
        messages=(ChatMessage("user", "ping"),),
        max_output_tokens=1,
        timeout=PROBE_TIMEOUT,
    )

    async def probe() -> None:
        try:
            async for _event in provider.stream(request):
                pass
        finally:
            await provider.aclose()

    try:
        asyncio.run(probe())
    except AuthError:
        return _("%(provider)s refused the API key. Replace it in the deployment's settings.") % {
            "provider": choice.name
        }
    except (Unavailable, ProviderTimeout) as exc:
        return _(
            "%(provider)s could not be reached (%(kind)s). Check the address and try again."
        ) % {"provider": choice.name, "kind": exc.kind}
    except ProviderError as exc:
        return _("%(provider)s refused the request: %(message)s") % {
            "provider": choice.name,
            "message": exc.message[:300],
        }
    return ""


@shared_task(base=TenantTask, name="deployments.start")
def deployment_start(deployment_id: int) -> str:
    deployment = Deployment.objects.select_related("version").filter(pk=deployment_id).first()
    if deployment is None or deployment.status != Deployment.Status.CONFIGURING:
        return "skipped"
    choice = choose_provider(
        provider=deployment.version.provider,
        model=deployment.version.model,
        secrets=stored_secrets(deployment),
        settings=deployment.settings,
    )
    problem = start_problem(choice)
    deployment_started(deployment_id=deployment_id, error=problem)
    return problem or "active"
