"""Websockets: the handshake's host picks the tenant, the session is checked in that tenant's
schema, and every database call of a consumer runs in that schema."""

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from websockets.typing import Origin

from config.asgi import application
from tests.conftest import make_session_cookie

pytestmark = pytest.mark.usefixtures("committed")


def _headers(
    host: str, session_key: str | None = None, origin: str | None = None
) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", host.encode()), (b"origin", (origin or f"http://{host}").encode())]
    if session_key:
        headers.append((b"cookie", f"sessionid={session_key}".encode()))
    return headers


async def _connect(
    host: str, session_key: str | None = None, origin: str | None = None
) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, "/ws/whoami/", headers=_headers(host, session_key, origin)
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def test_signed_in_user_is_told_who_and_where_they_are(acme):
    session = await database_sync_to_async(make_session_cookie)(acme, acme.admin_email)
    communicator = await _connect(acme.host, session)
    assert await communicator.receive_json_from() == {
        "type": "identity",
        "tenant": "acme",
        "user": acme.admin_email,
        "role": "tenant_admin",
        "members": 3,
    }
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from())["members"] == 3
    await communicator.disconnect()


async def test_interleaved_consumers_of_two_tenants_each_read_their_own_schema(acme, globex):
    a = await _connect(
        acme.host, await database_sync_to_async(make_session_cookie)(acme, acme.admin_email)
    )
    b = await _connect(
        globex.host, await database_sync_to_async(make_session_cookie)(globex, globex.admin_email)
    )
    await a.receive_json_from()
    await b.receive_json_from()
    for _ in range(5):
        await a.send_json_to({"type": "ping"})
        await b.send_json_to({"type": "ping"})
        replies = await asyncio.gather(a.receive_json_from(), b.receive_json_from())
        assert [(r["tenant"], r["members"]) for r in replies] == [("acme", 3), ("globex", 5)]
    await a.disconnect()
    await b.disconnect()


async def _close_code(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output()
    assert message["type"] == "websocket.close"
    return int(message["code"])


async def test_no_session_is_refused_with_4401(acme):
    communicator = await _connect(acme.host)
    assert await _close_code(communicator) == 4401


async def test_session_of_another_tenant_is_refused(acme, globex):
    globex_session = await database_sync_to_async(make_session_cookie)(globex, globex.admin_email)
    communicator = await _connect(acme.host, globex_session)
    assert await _close_code(communicator) == 4401


async def test_unknown_host_is_refused_with_4404():
    communicator = await _connect("nobody.localhost")
    assert await _close_code(communicator) == 4404


@pytest.mark.parametrize("origin", ["http://evil.example.com", "http://globex.localhost", "null"])
async def test_a_page_on_another_host_cannot_open_a_socket_with_the_users_cookies(acme, origin):
    session = await database_sync_to_async(make_session_cookie)(acme, acme.admin_email)
    communicator = await _connect(acme.host, session, origin=origin)
    assert await _close_code(communicator) == 4403


async def test_the_origin_check_does_not_depend_on_allowed_hosts(acme, settings):
    settings.ALLOWED_HOSTS = ["*"]  # as in production
    session = await database_sync_to_async(make_session_cookie)(acme, acme.admin_email)
    communicator = await _connect(acme.host, session, origin="http://globex.localhost")
    assert await _close_code(communicator) == 4403


async def test_a_client_sending_no_origin_is_judged_by_its_own_credentials(acme):
    session = await database_sync_to_async(make_session_cookie)(acme, acme.admin_email)
    headers = [(b"host", acme.host.encode()), (b"cookie", f"sessionid={session}".encode())]
    communicator = WebsocketCommunicator(application, "/ws/whoami/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["tenant"] == "acme"
    await communicator.disconnect()


async def test_suspended_tenant_is_refused_with_4423(acme):
    from apps.tenants.models import Tenant

    suspend = database_sync_to_async(Tenant.objects.filter(pk=acme.tenant.pk).update)
    await suspend(status="suspended")
    try:
        communicator = await _connect(acme.host)
        assert await _close_code(communicator) == 4423
    finally:
        await suspend(status="active")


async def test_unexpected_message_gets_an_error_and_the_connection_stays_usable(acme):
    communicator = await _connect(
        acme.host, await database_sync_to_async(make_session_cookie)(acme, acme.admin_email)
    )
    await communicator.receive_json_from()
    await communicator.send_json_to({"type": "dance"})
    assert (await communicator.receive_json_from())["code"] == "unknown_message"
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from())["type"] == "identity"
    await communicator.disconnect()


async def test_real_client_over_a_running_server(product_server, acme, globex):
    session = await database_sync_to_async(make_session_cookie)(acme, acme.admin_email)
    uri = f"ws://{acme.host}:{product_server.port}/ws/whoami/"
    async with websockets.connect(
        uri,
        host="127.0.0.1",  # *.localhost is not resolved by Python; the Host header still says acme
        port=product_server.port,
        origin=Origin(f"http://{acme.host}:{product_server.port}"),
        additional_headers={"Cookie": f"sessionid={session}"},
    ) as socket:
        hello = json.loads(await socket.recv())
        assert (hello["tenant"], hello["user"], hello["members"]) == ("acme", acme.admin_email, 3)

    globex_session = await database_sync_to_async(make_session_cookie)(globex, globex.admin_email)
    async with websockets.connect(
        uri,
        host="127.0.0.1",
        port=product_server.port,
        origin=Origin(f"http://{acme.host}:{product_server.port}"),
        additional_headers={"Cookie": f"sessionid={globex_session}"},
    ) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd.code == 4401


def _refusals(schema: str) -> list[tuple[str, str, str]]:
    from django_tenants.utils import schema_context

    from apps.audit.models import AuditEvent

    with schema_context(schema):
        return [
            (event.metadata["reason"], event.metadata["host"], event.outcome)
            for event in AuditEvent.objects.filter(action="websocket.connection_refused").order_by(
                "id"
            )
        ]


async def _refused_from(
    address: str, host: str, session: str | None = None, origin: str | None = None
) -> int:
    communicator = WebsocketCommunicator(
        application, "/ws/whoami/", headers=_headers(host, session, origin)
    )
    communicator.scope["client"] = [address, 50000]
    connected, _ = await communicator.connect()
    assert connected
    return await _close_code(communicator)


async def test_refusals_before_any_consumer_are_audited_where_they_belong(acme):
    from apps.tenants.models import Tenant

    refusals = database_sync_to_async(_refusals)
    in_acme, in_public = len(await refusals("acme")), len(await refusals("public"))
    address = "203.0.113.7"  # a client of its own: one record a minute per reason and address

    session = await database_sync_to_async(make_session_cookie)(acme, acme.admin_email)
    assert await _refused_from(address, acme.host, session, "http://evil.example.com") == 4403
    assert await _refused_from(address, "nobody-here.localhost") == 4404
    suspend = database_sync_to_async(Tenant.objects.filter(pk=acme.tenant.pk).update)
    await suspend(status="suspended")
    try:
        assert await _refused_from(address, acme.host) == 4423
    finally:
        await suspend(status="active")
    # The same refusal again within the minute: refused, not recorded again.
    assert await _refused_from(address, acme.host, session, "http://evil.example.com") == 4403

    acme_events = (await refusals("acme"))[in_acme:]
    public_events = (await refusals("public"))[in_public:]
    assert acme_events == [
        ("bad_origin", acme.host, "denied"),
        ("tenant_suspended", acme.host, "denied"),
    ]
    assert public_events == [("unknown_host", "nobody-here.localhost", "denied")]
