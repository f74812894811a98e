"""``make run``: the whole development stack in one terminal, on embedded defaults.

Starts the embedded Redis (unless REDIS_URL is set), migrates the database (which also adds
missing schedules), makes sure the dev admin exists, then runs the Procfile's processes with
honcho until Ctrl-C; the embedded Redis stops last, after every process using it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command

from tradingsite.accounts import dev_admin_ensure
from tradingsite.embedded_redis import embedded_redis

WEB_URL = "http://127.0.0.1:8000"


def devstack_run(*, say: Callable[[str], None]) -> int:
    if settings.ENV != "dev":
        raise PermissionError(f"make run starts the development stack; ENV is {settings.ENV}")
    with contextlib.ExitStack() as stack:
        if not os.environ.get("REDIS_URL"):
            socket_path = Path(urlsplit(settings.REDIS_URL).path)
            stack.enter_context(embedded_redis(socket_path))
            say(f"embedded Redis on {settings.REDIS_URL}")
        call_command("migrate", interactive=False, verbosity=0)
        admin = dev_admin_ensure(password_file=settings.VAR_DIR / "dev-admin-password")
        say(f"dashboard: {WEB_URL}/   admin: {WEB_URL}/admin/   API docs: {WEB_URL}/api/docs/")
        say(f"dev login: {admin.username} / {admin.password}   (Ctrl-C stops everything)")
        bin_dir = str(Path(sys.executable).parent)
        child_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        child_env["REDIS_URL"] = settings.REDIS_URL
        honcho = subprocess.Popen(  # noqa: S603 - our own Procfile runner
            [sys.executable, "-m", "honcho", "start", "-f", str(settings.BASE_DIR / "Procfile")],
            cwd=settings.BASE_DIR,
            env=child_env,
        )
        while True:
            try:
                return honcho.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached honcho too; wait for it to stop the processes, then Redis.
                continue
