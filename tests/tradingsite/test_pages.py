from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from doctor.services import heartbeat_record

pytestmark = pytest.mark.django_db

TAB_PATHS = ["/", "/router-health/", "/replays/", "/risk/", "/ml-insights/", "/doctor/"]


@pytest.mark.parametrize("path", TAB_PATHS)
def test_every_tab_requires_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("path", TAB_PATHS)
def test_every_tab_shows_all_six_tabs_to_a_logged_in_user(
    client: Client, viewer_user: User, path: str
) -> None:
    client.force_login(viewer_user)
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    for label in ["Overview", "Router Health", "Replays", "Risk", "ML Insights", "Doctor"]:
        assert f">{label}</a>" in html
    assert 'aria-current="page"' in html
    assert 'id="last-heartbeat"' in html


def test_login_with_the_right_password_opens_the_overview(
    client: Client, viewer_user: User
) -> None:
    response = client.post("/login/", {"username": "vera", "password": "a-long-secret-2"})
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_login_with_a_wrong_password_is_refused(client: Client, viewer_user: User) -> None:
    response = client.post("/login/", {"username": "vera", "password": "wrong"})
    assert response.status_code == 200
    assert "did not match" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_charting_library_is_served_from_the_npm_package(
    client: Client, viewer_user: User
) -> None:
    client.force_login(viewer_user)
    page = client.get("/doctor/").content.decode()
    assert "/static/vendor/echarts/echarts.min.js" in page
    response = client.get("/static/vendor/echarts/echarts.min.js")
    assert response.status_code == 200
    assert b"echarts" in b"".join(response.streaming_content)  # type: ignore[attr-defined]


def test_the_api_refuses_anonymous_requests(client: Client) -> None:
    response = client.get("/api/v1/heartbeats/latest/")
    assert response.status_code in (401, 403)


def test_the_api_lists_the_latest_heartbeat_per_component_with_a_token(
    client: Client, viewer_user: User
) -> None:
    for component in ["worker", "worker", "ml"]:
        heartbeat_record(component=component, hostname="h1")
    newest_worker = heartbeat_record(component="worker", hostname="h2")
    token = Token.objects.create(user=viewer_user)

    response = client.get("/api/v1/heartbeats/latest/", HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200
    rows = {row["component"]: row for row in response.json()}
    assert set(rows) == {"worker", "ml"}
    assert rows["worker"]["hostname"] == "h2"
    assert rows["worker"]["at"].replace("Z", "+00:00") == newest_worker.created_at.isoformat()


def test_the_openapi_schema_and_docs_are_served(client: Client, viewer_user: User) -> None:
    client.force_login(viewer_user)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/v1/heartbeats/latest/" in schema.json()["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    # The interactive docs load their assets from this server, not from a CDN.
    assert "drf_spectacular_sidecar" in docs.content.decode()


def test_the_admin_lists_heartbeats_and_incidents(
    client: Client, django_user_model: type[User]
) -> None:
    admin = django_user_model.objects.create_superuser("root", "", "a-long-secret-3")
    client.force_login(admin)
    heartbeat_record(component="worker")
    for path in [
        "/admin/doctor/heartbeat/",
        "/admin/doctor/incident/",
        "/admin/tradingsite/outboxentry/",
        "/admin/django_celery_beat/periodictask/",
        "/admin/risk/risklimit/",
        "/admin/risk/riskstate/",
        "/admin/risk/risksnapshot/",
        "/admin/risk/autotuneevent/",
        *[
            f"/admin/routing/{model}/"
            for model in (
                "instrument",
                "marketbar",
                "signal",
                "order",
                "fill",
                "position",
                "cashflow",
                "navpoint",
            )
        ],
    ]:
        assert client.get(path).status_code == 200, path


@pytest.fixture
def no_login_failures() -> Iterator[None]:
    from tradingsite.accounts import login_failures_clear

    login_failures_clear(username="vera", address="127.0.0.1")
    yield
    login_failures_clear(username="vera", address="127.0.0.1")


@pytest.mark.usefixtures("no_login_failures")
def test_repeated_failed_logins_lock_the_username_for_a_while(
    client: Client, viewer_user: User
) -> None:
    from tradingsite.accounts import LOGIN_FAILURES_PER_USER

    for _ in range(LOGIN_FAILURES_PER_USER):
        assert client.post("/login/", {"username": "vera", "password": "guess"}).status_code == 200
    # Now even the right password is not checked.
    locked = client.post("/login/", {"username": "vera", "password": "a-long-secret-2"})
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 15 * 60
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.usefixtures("no_login_failures")
def test_a_successful_login_clears_the_count(client: Client, viewer_user: User) -> None:
    from tradingsite.accounts import LOGIN_FAILURES_PER_USER

    for _ in range(LOGIN_FAILURES_PER_USER - 1):
        client.post("/login/", {"username": "vera", "password": "guess"})
    assert (
        client.post("/login/", {"username": "vera", "password": "a-long-secret-2"}).status_code
        == 302
    )
    client.logout()
    client.post("/login/", {"username": "vera", "password": "guess"})
    assert (
        client.post("/login/", {"username": "vera", "password": "a-long-secret-2"}).status_code
        == 302
    )
