"""The deploy flow and deployment pages, as a person uses them."""

from __future__ import annotations

from django_tenants.utils import schema_context

from apps.deployments.models import Deployment
from tests.deployments.conftest import run_start_checks


def html(response) -> str:
    return response.content.decode()


def test_deploying_takes_three_clicks_from_the_blueprint_page(
    blueprint_version, client_for, acme, django_capture_on_commit_callbacks
):
    admin = client_for(acme.host, acme.admin_email)

    blueprint_page = html(admin.get("/marketplace/invoice-checker/"))  # click 1: Deploy
    assert 'href="/deployments/new/invoice-checker/"' in blueprint_page
    form = html(admin.get("/deployments/new/invoice-checker/"))  # click 2: the form
    assert '<option value="1.0.0" selected>' in form
    assert 'type="password" name="settings-erp_token"' in form
    assert "runs offline on the built-in local provider" in form

    with django_capture_on_commit_callbacks() as callbacks:  # click 3: Deploy
        done = admin.post(
            "/deployments/new/invoice-checker/",
            {
                "version": "1.0.0",
                "name": "Invoice desk",
                "settings-currency": "USD",
                "settings-erp_token": "tok-page",
            },
        )
    run_start_checks(acme, callbacks)

    assert done.status_code == 302
    detail = html(admin.get(done["Location"]))
    assert "Invoice desk" in detail
    assert "Active" in detail
    assert "tok-page" not in detail
    assert "Stored secrets: erp_token" in detail


def test_invalid_settings_are_shown_inline_and_the_input_is_kept(
    blueprint_version, client_for, acme
):
    admin = client_for(acme.host, acme.admin_email)

    page = admin.post(
        "/deployments/new/invoice-checker/",
        {"version": "1.0.0", "name": "", "settings-currency": "JPY"},
    )

    assert page.status_code == 400
    text = html(page)
    assert "Please correct the fields marked below." in text
    assert text.count('class="error"') >= 2  # the name and the currency
    with schema_context(acme.schema):
        assert not Deployment.objects.exists()


def test_the_list_shows_status_version_and_usage(blueprint_version, deploy, client_for, acme):
    deploy(name="Invoice desk")

    page = html(client_for(acme.host, acme.member_emails[0]).get("/deployments/"))

    assert "Invoice desk" in page
    assert "badge-status-active" in page
    assert "Messages this month" in page
    assert "offline" in page


def test_members_see_deployments_but_cannot_deploy(blueprint_version, client_for, acme):
    member = client_for(acme.host, acme.member_emails[0])

    assert member.get("/deployments/").status_code == 200
    assert member.get("/deployments/new/invoice-checker/").status_code == 403
    assert "/deployments/new/" not in html(member.get("/marketplace/invoice-checker/"))


def test_pause_and_resume_from_the_page(blueprint_version, deploy, client_for, acme):
    from tests.deployments.conftest import as_json

    created = as_json(deploy())
    admin = client_for(acme.host, acme.admin_email)

    admin.post(f"/deployments/{created['id']}/pause/")
    paused = html(admin.get(f"/deployments/{created['id']}/"))

    assert "badge-status-paused" in paused
    assert ">Resume<" in paused


def test_a_text_file_is_added_to_the_knowledge_from_the_page(
    blueprint_version, deploy, client_for, acme
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.deployments.conftest import as_json

    created = as_json(deploy())
    admin = client_for(acme.host, acme.admin_email)

    admin.post(
        f"/deployments/{created['id']}/documents/",
        {"file": SimpleUploadedFile("terms.md", b"# Terms\n\nNet 30 for all suppliers.")},
    )
    refused = admin.post(
        f"/deployments/{created['id']}/documents/",
        {"file": SimpleUploadedFile("photo.jpg", b"\xff\xd8\xff\xe0binary")},
        follow=True,
    )

    page = html(admin.get(f"/deployments/{created['id']}/"))
    assert "terms.md" in page
    assert "Not a text file." in html(refused)
