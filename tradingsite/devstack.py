"""``make run``: the whole development stack in one terminal, on embedded defaults.

Starts the embedded Redis (unless REDIS_URL is set) and, unless FIRESTORE_PROJECT is set, the
local Firestore emulator (npm, in memory) so the mirror runs end to end; migrates the database
(which also adds missing schedules), makes sure the dev admin exists, then runs the Procfile's
processes with honcho until Ctrl-C; Redis and the emulator stop last, after every process using
them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command

from tradingsite.accounts import dev_admin_ensure
from tradingsite.embedded_redis import embedded_redis

WEB_URL = "http://127.0.0.1:8000"
DEV_FIRESTORE_PROJECT = "tradingsite-dev"
DEV_FIRESTORE_PORT = 8086
EMULATOR_SCRIPT = Path(__file__).with_name("firestore_emulator.mjs")
EMULATOR_READY = "firestore emulator ready"


@contextlib.contextmanager
def dev_firestore_emulator(
    *, port: int, say: Callable[[str], None], timeout: float = 30.0
) -> Iterator[str]:
    """The local Firestore emulator for the block: yields its host:port, or "" (said why) when
    it cannot run — the stack then runs with the mirror off, as the doctor will report."""
    node = shutil.which("node")
    if node is None:
        say("Firestore mirror off: node is not on PATH (the emulator is an npm package)")
        yield ""
        return
    log_path = settings.VAR_DIR / "firestore-emulator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 - our own script
            [node, str(EMULATOR_SCRIPT), str(port)],
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while EMULATOR_READY not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text().strip().splitlines()[-1:] or ["no output"]
                say(f"Firestore mirror off: the emulator did not start ({tail[0]})")
                yield ""
                return
            time.sleep(0.1)
        say(f"Firestore emulator on 127.0.0.1:{port} (project {DEV_FIRESTORE_PROJECT})")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def devstack_run(*, say: Callable[[str], None]) -> int:
    if settings.ENV != "dev":
        raise PermissionError(f"make run starts the development stack; ENV is {settings.ENV}")
    with contextlib.ExitStack() as stack:
        if not os.environ.get("REDIS_URL"):
            socket_path = Path(urlsplit(settings.REDIS_URL).path)
            stack.enter_context(embedded_redis(socket_path))
            say(f"embedded Redis on {settings.REDIS_URL}")
        firestore_host = ""
        if not settings.FIRESTORE_PROJECT:
            firestore_host = stack.enter_context(
                dev_firestore_emulator(port=DEV_FIRESTORE_PORT, say=say)
            )
        call_command("migrate", interactive=False, verbosity=0)
        admin = dev_admin_ensure(password_file=settings.VAR_DIR / "dev-admin-password")
        say(f"dashboard: {WEB_URL}/   admin: {WEB_URL}/admin/   API docs: {WEB_URL}/api/docs/")
        say(f"dev login: {admin.username} / {admin.password}   (Ctrl-C stops everything)")
        bin_dir = str(Path(sys.executable).parent)
        child_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        child_env["REDIS_URL"] = settings.REDIS_URL
        if firestore_host:
            child_env["FIRESTORE_PROJECT"] = DEV_FIRESTORE_PROJECT
            child_env["FIRESTORE_EMULATOR_HOST"] = firestore_host
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
