"""Groups and the development admin account."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

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


def is_operator(user: object) -> bool:
    """Operators (and superusers) may change state; viewers only read."""
    if getattr(user, "is_superuser", False) and getattr(user, "is_active", False):
        return True
    return _in_group(user, OPERATOR_GROUP)
