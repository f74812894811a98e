"""Groups and the development admin account."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

VIEWER_GROUP = "viewer"
OPERATOR_GROUP = "operator"
DEV_ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class DevAdmin:
    username: str
    password: str
    created: bool


def dev_admin_ensure(*, password_file: Path) -> DevAdmin:
    """Create the dev admin (superuser, viewer and operator) once; ENV=dev only.

    The generated password is kept in ``password_file`` (inside the ignored var/ folder) so
    every run can print it again.
    """
    if settings.ENV != "dev":
        raise PermissionError(
            f"the dev admin account exists only with ENV=dev (now {settings.ENV})"
        )
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.filter(username=DEV_ADMIN_USERNAME).first()
        created = user is None
        if user is None or not password_file.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                user = user_model.objects.create_superuser(
                    username=DEV_ADMIN_USERNAME, email="", password=password
                )
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            password_file.write_text(password)
            password_file.chmod(0o600)
        user.groups.add(*Group.objects.filter(name__in=[VIEWER_GROUP, OPERATOR_GROUP]))
    return DevAdmin(DEV_ADMIN_USERNAME, password_file.read_text().strip(), created)


def is_viewer(user: object) -> bool:
    """Viewers and operators (and superusers) may read everything."""
    return is_operator(user) or _in_group(user, VIEWER_GROUP)


def _in_group(user: object, name: str) -> bool:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    groups = getattr(user, "groups", None)
    return groups is not None and bool(groups.filter(name=name).exists())


def audit_log(user: object, obj: Any, message: str) -> None:
    """Record what a person did to ``obj`` in the admin's log (who, when, why)."""
    from django.contrib.admin.models import CHANGE, LogEntry

    user_id = getattr(user, "pk", None)
    if user_id is None:
        raise ValueError("only a logged-in person can do this")
    LogEntry.objects.log_actions(
        user_id=user_id,
        queryset=[obj],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


def is_operator(user: object) -> bool:
    """Operators (and superusers) may change state; viewers only read."""
    if getattr(user, "is_superuser", False) and getattr(user, "is_active", False):
        return True
    return _in_group(user, OPERATOR_GROUP)


# --- login throttling ------------------------------------------------------------------------
#
# Failed logins are counted per username and per client address in Redis (shared by every web
# process); past the limit the login page refuses to check passwords for a while, so a
# password cannot be guessed at speed. A successful login clears its username's count.

LOGIN_FAILURES_PER_USER = 5
LOGIN_FAILURES_PER_ADDRESS = 30  # an office behind one address has many people
LOGIN_LOCKOUT_SECONDS = 15 * 60


def _login_keys(*, username: str, address: str) -> list[str]:
    from tradingsite.redisconn import redis_key

    return [
        redis_key("login-failures", "user", username.strip().lower()[:150]),
        redis_key("login-failures", "address", address[:64]),
    ]


def login_locked_for(*, username: str, address: str) -> int:
    """Seconds until this username or address may try again (0: it may try now)."""
    from tradingsite.redisconn import redis_client

    client = redis_client()
    limits = (LOGIN_FAILURES_PER_USER, LOGIN_FAILURES_PER_ADDRESS)
    waits = [
        int(client.ttl(key))
        for key, limit in zip(_login_keys(username=username, address=address), limits, strict=True)
        if int(client.get(key) or 0) >= limit
    ]
    return max([wait for wait in waits if wait > 0], default=0)


def login_failure_record(*, username: str, address: str) -> None:
    from tradingsite.redisconn import redis_client

    pipeline = redis_client().pipeline()
    for key in _login_keys(username=username, address=address):
        pipeline.incr(key)
        pipeline.expire(key, LOGIN_LOCKOUT_SECONDS)
    pipeline.execute()


def login_failures_clear(*, username: str, address: str = "") -> None:
    """Forget the failures of ``username`` (after it logged in), and of ``address`` if given."""
    from tradingsite.redisconn import redis_client

    user_key, address_key = _login_keys(username=username, address=address)
    redis_client().delete(*([user_key, address_key] if address else [user_key]))
