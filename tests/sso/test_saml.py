"""SAML 2.0 sign-in end to end: the Django test client is the browser, tests/identity/saml_idp.py
the identity provider (real keys, real signed XML). Nothing in the product, allauth or
python3-saml is patched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django_tenants.utils import schema_context

from apps.accounts.models import Role, User
from tests.identity.saml_idp import RSA_SHA1, SHA1, XswVariant
from tests.sso.conftest import (
    browser,
    events,
    last_failure,
    saml_connection,
    signed_in_email,
    user_or_none,
)

ADA = "ada@acme.example"


def attributes(
    email: str = ADA, groups: tuple[str, ...] = ("engineering",)
) -> dict[str, list[str]]:
    return {
        "email": [email],
        "firstName": ["Ada"],
        "lastName": ["Lovelace"],
        "groups": list(groups),
    }


def test_sp_initiated_sign_in_creates_the_person_with_the_mapped_role(db, acme, idp):
    saml_connection(acme, idp)
    b = browser(acme)

    sso = b.start()
    assert sso.url == idp.sso_url
    assert sso.authn_request["issuer"] == b.entity_id
    assert sso.authn_request["acs_url"] == b.acs_url
    response = b.post(
        idp.response_for_request(sso.authn_request, name_id=ADA, attributes=attributes()),
        sso.relay_state or "",
    )

    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/"
    assert signed_in_email(b.client, acme) == ADA
    user = user_or_none(acme, ADA)
    assert user is not None
    assert (user.role, user.full_name, user.has_usable_password()) == (
        Role.DEVELOPER,
        "Ada Lovelace",
        False,
    )
    login = events(acme, "auth.login")[-1]
    assert (login.actor_label, login.metadata["method"]) == (ADA, "saml")
    sign_in = events(acme, "sso.sign_in")[-1]
    assert sign_in.metadata["connection"] == "okta"
    assert sign_in.metadata["created"] is True
    assert events(acme, "user.created")[-1].metadata == {"email": ADA, "role": "developer"}


def test_highest_privilege_wins_and_the_mapping_is_reapplied_at_every_sign_in(db, acme, idp):
    saml_connection(acme, idp)

    def sign_in(groups: tuple[str, ...]) -> str:
        b = browser(acme)
        sso = b.start()
        b.post(
            idp.response_for_request(
                sso.authn_request, name_id=ADA, attributes=attributes(groups=groups)
            )
        )
        assert signed_in_email(b.client, acme) == ADA
        return user_or_none(acme, ADA).role

    assert sign_in(("engineering", "admins", "auditors")) == Role.TENANT_ADMIN
    assert sign_in(("auditors",)) == Role.AUDITOR
    assert sign_in(("unrelated",)) == Role.MEMBER  # no group matches: the default role
    change = events(acme, "user.role_changed")[-1]
    assert change.metadata == {
        "before": "auditor",
        "after": "member",
        "via": "sso",
        "connection": "okta",
    }


def test_idp_initiated_sign_in_is_refused_by_default(db, acme, idp):
    saml_connection(acme, idp)
    b = browser(acme)

    response = b.post(
        idp.build_response(
            acs_url=b.acs_url, audience=b.entity_id, name_id=ADA, attributes=attributes()
        )
    )

    assert response.status_code == 403
    assert "Single sign-on failed" in response.content.decode()
    assert signed_in_email(b.client, acme) is None
    failure = last_failure(acme)
    assert (failure.outcome, failure.metadata) == (
        "denied",
        {"reason": "idp_initiated", "method": "saml", "connection": "okta"},
    )
    assert user_or_none(acme, ADA) is None


def test_idp_initiated_sign_in_works_when_enabled_and_a_replay_is_refused(db, acme, idp):
    saml_connection(acme, idp, allow_idp_initiated=True)
    b = browser(acme)
    saml_response = idp.build_response(
        acs_url=b.acs_url, audience=b.entity_id, name_id=ADA, attributes=attributes()
    )

    response = b.post(saml_response, relay_state="/")

    assert response.status_code == 200
    assert signed_in_email(b.client, acme) == ADA

    thief = browser(acme)
    replayed = thief.post(saml_response)

    assert replayed.status_code == 403
    assert signed_in_email(thief.client, acme) is None
    assert last_failure(acme).metadata["reason"] == "replay"


def test_a_replayed_sp_initiated_response_is_refused(db, acme, idp):
    saml_connection(acme, idp)
    b = browser(acme)
    sso = b.start()
    saml_response = idp.response_for_request(
        sso.authn_request, name_id=ADA, attributes=attributes()
    )
    b.post(saml_response)
    assert signed_in_email(b.client, acme) == ADA

    thief = browser(acme)
    thief.start()  # the thief's own session, with a pending request of its own
    response = thief.post(saml_response)

    assert response.status_code == 403
    assert signed_in_email(thief.client, acme) is None
    assert last_failure(acme).metadata["reason"] == "replay"


def _xsw(variant: XswVariant):
    def build(idp, b, request_id):
        return idp.wrapped_response(
            acs_url=b.acs_url,
            audience=b.entity_id,
            signed_name_id="mallory@acme.example",
            signed_attributes={"email": ["mallory@acme.example"]},
            injected_name_id=ADA,
            injected_attributes={"email": [ADA], "groups": ["admins"]},
            variant=variant,
            in_response_to=request_id,
        )

    return build


def _options(**options):
    def build(idp, b, request_id):
        arguments = {
            "acs_url": b.acs_url,
            "audience": b.entity_id,
            "name_id": ADA,
            "attributes": attributes(),
            "in_response_to": request_id,
        }
        return idp.build_response(**(arguments | options))

    return build


def _now_plus(minutes: int) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


ATTACKS = {
    "unsigned": (
        lambda idp, b, rid: idp.unsigned_response(
            acs_url=b.acs_url,
            audience=b.entity_id,
            name_id=ADA,
            attributes=attributes(),
            in_response_to=rid,
        ),
        "unsigned",
        403,
    ),
    **{
        f"xsw-{variant.value}": (_xsw(variant), "signature_wrapping", 403) for variant in XswVariant
    },
    "altered-attribute": (
        lambda idp, b, rid: idp.tampered_attribute_response(
            acs_url=b.acs_url,
            audience=b.entity_id,
            name_id=ADA,
            attributes=attributes(groups=("staff",)),
            attribute="groups",
            new_value="admins",
            in_response_to=rid,
        ),
        "signature_invalid",
        403,
    ),
    "altered-name-id": (
        lambda idp, b, rid: idp.tampered_name_id_response(
            acs_url=b.acs_url,
            audience=b.entity_id,
            name_id="mallory@acme.example",
            new_name_id=ADA,
            in_response_to=rid,
        ),
        "signature_invalid",
        403,
    ),
    "wrong-audience": (
        _options(audience="http://globex.localhost/accounts/saml/okta/metadata/"),
        "audience",
        403,
    ),
    "no-audience": (_options(audience=None), "audience", 403),
    "expired": (
        _options(not_on_or_after=_now_plus(-10), subject_not_on_or_after=_now_plus(5)),
        "expired",
        403,
    ),
    "subject-confirmation-expired": (
        _options(subject_not_on_or_after=_now_plus(-1)),
        "subject_confirmation",
        403,
    ),
    "not-yet-valid": (_options(not_before=_now_plus(10)), "not_yet_valid", 403),
    "wrong-issuer": (_options(issuer="https://evil.example.test/idp"), "wrong_issuer", 403),
    "deprecated-sha1": (
        _options(signature_algorithm=RSA_SHA1, digest_algorithm=SHA1),
        "deprecated_algorithm",
        403,
    ),
    "wrong-destination": (
        _options(destination="http://globex.localhost/accounts/saml/okta/acs/"),
        "wrong_destination",
        403,
    ),
    "malformed-xml": (lambda idp, b, rid: idp.malformed_response(), "malformed_xml", 400),
    "not-base64": (lambda idp, b, rid: "%%% not base64 %%%", "malformed_xml", 400),
    "dtd-entity-expansion": (
        lambda idp, b, rid: idp.response_with_doctype(
            acs_url=b.acs_url,
            audience=b.entity_id,
            name_id=ADA,
            attributes=attributes(),
            in_response_to=rid,
        ),
        "dtd_forbidden",
        400,
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attacks_are_refused_with_an_error_page_an_audit_event_and_no_session(
    db, acme, idp, attack
):
    build, reason, status = ATTACKS[attack]
    saml_connection(acme, idp)
    b = browser(acme)
    sso = b.start()

    response = b.post(build(idp, b, sso.authn_request["id"]))

    assert response.status_code == status
    assert "Single sign-on failed" in response.content.decode()
    assert signed_in_email(b.client, acme) is None
    failure = last_failure(acme)
    assert failure.metadata == {"reason": reason, "method": "saml", "connection": "okta"}
    assert failure.outcome == "failure"
    assert user_or_none(acme, ADA) is None
    assert not events(acme, "auth.login") or events(acme, "auth.login")[-1].actor_label != ADA


def test_signed_with_another_key_is_refused(db, acme, idp, stranger_key):
    saml_connection(acme, idp)
    b = browser(acme)
    sso = b.start()

    response = b.post(
        idp.response_for_request(
            sso.authn_request, name_id=ADA, attributes=attributes(), key=stranger_key
        )
    )

    assert response.status_code == 403
    assert signed_in_email(b.client, acme) is None
    assert last_failure(acme).metadata["reason"] == "signature_invalid"


def test_a_response_for_another_tenants_sp_is_refused(db, acme, globex, idp):
    saml_connection(acme, idp)
    saml_connection(globex, idp)
    at_globex = browser(globex)
    sso = at_globex.start()
    for_globex = idp.response_for_request(sso.authn_request, name_id=ADA, attributes=attributes())

    at_acme = browser(acme)
    at_acme.start()
    response = at_acme.post(for_globex)

    assert response.status_code == 403
    assert signed_in_email(at_acme.client, acme) is None
    assert last_failure(acme).metadata["reason"] == "wrong_destination"
    assert user_or_none(acme, ADA) is None


def test_a_response_answering_a_request_this_browser_did_not_make_is_refused(db, acme, idp):
    saml_connection(acme, idp)
    victim = browser(acme)
    sso = victim.start()
    attacker = browser(acme)

    response = attacker.post(
        idp.response_for_request(sso.authn_request, name_id=ADA, attributes=attributes())
    )

    assert response.status_code == 403
    assert signed_in_email(attacker.client, acme) is None
    assert last_failure(acme).metadata["reason"] == "unknown_request"


def test_another_organisations_connection_is_not_found_here(db, acme, globex, idp):
    saml_connection(globex, idp, slug="globex-okta")
    b = browser(acme, slug="globex-okta")

    assert b.client.post("/accounts/saml/globex-okta/login/").status_code == 404
    assert b.client.get("/accounts/saml/globex-okta/metadata/").status_code == 404
    assert (
        browser(globex, slug="globex-okta")
        .client.get("/accounts/saml/globex-okta/metadata/")
        .status_code
        == 200
    )


def test_a_disabled_connection_is_not_found(db, acme, idp):
    connection = saml_connection(acme, idp)
    from apps.sso.services import connection_set_enabled

    with schema_context(acme.schema):
        connection_set_enabled(actor=None, connection=connection, enabled=False)

    assert browser(acme).client.post("/accounts/saml/okta/login/").status_code == 404


def test_sp_metadata_is_published_per_tenant_host(db, acme, globex, idp):
    saml_connection(acme, idp)
    saml_connection(globex, idp)

    for org in (acme, globex):
        response = browser(org).client.get("/accounts/saml/okta/metadata/")
        assert response.status_code == 200
        xml = response.content.decode()
        assert f'entityID="http://{org.host}/accounts/saml/okta/metadata/"' in xml
        assert f'Location="http://{org.host}/accounts/saml/okta/acs/"' in xml


def test_deactivated_people_cannot_sign_in(db, acme, idp):
    saml_connection(acme, idp)
    b = browser(acme)
    sso = b.start()
    b.post(idp.response_for_request(sso.authn_request, name_id=ADA, attributes=attributes()))
    with schema_context(acme.schema):
        User.objects.filter(email=ADA).update(is_active=False)

    again = browser(acme)
    sso = again.start()
    response = again.post(
        idp.response_for_request(sso.authn_request, name_id=ADA, attributes=attributes())
    )

    assert response.status_code == 403
    assert "deactivated" in response.content.decode()
    assert signed_in_email(again.client, acme) is None
    failure = last_failure(acme)
    assert (failure.outcome, failure.metadata["reason"]) == ("denied", "inactive")


def test_an_existing_password_account_is_not_taken_over_by_email_alone(db, acme, idp):
    saml_connection(acme, idp)
    member = acme.member_emails[0]
    b = browser(acme)
    sso = b.start()

    response = b.post(
        idp.response_for_request(sso.authn_request, name_id=member, attributes=attributes(member))
    )

    assert response.status_code == 403
    assert signed_in_email(b.client, acme) is None
    assert last_failure(acme).metadata["reason"] == "email_conflict"


def test_an_existing_account_is_linked_when_the_connection_trusts_the_idps_emails(db, acme, idp):
    saml_connection(acme, idp, trust_idp_email=True, role_mapping=[])
    member = acme.member_emails[0]
    b = browser(acme)
    sso = b.start()

    b.post(
        idp.response_for_request(sso.authn_request, name_id=member, attributes=attributes(member))
    )

    assert signed_in_email(b.client, acme) == member
    assert events(acme, "sso.sign_in")[-1].metadata["linked_by_email"] is True
    assert user_or_none(acme, member).role == Role.MEMBER  # no mapping: role untouched


def test_without_just_in_time_creation_unknown_people_are_refused(db, acme, idp):
    saml_connection(acme, idp, jit_enabled=False)
    b = browser(acme)
    sso = b.start()

    response = b.post(
        idp.response_for_request(sso.authn_request, name_id=ADA, attributes=attributes())
    )

    assert response.status_code == 403
    assert "invite you" in response.content.decode()
    assert last_failure(acme).metadata["reason"] == "jit_disabled"
    assert user_or_none(acme, ADA) is None


def test_the_login_page_shows_the_organisations_sso_buttons_only(db, acme, globex, idp):
    saml_connection(acme, idp, display_name="Acme Okta")
    saml_connection(globex, idp, slug="globex-sso", display_name="Globex Entra")

    page = browser(acme).client.get("/accounts/login/").content.decode()

    assert "Sign in with Acme Okta" in page
    assert 'action="/accounts/saml/okta/login/?process=login"' in page
    assert "Globex Entra" not in page
