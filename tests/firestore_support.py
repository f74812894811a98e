"""Pytest plugin: the real Firestore emulator (npm ``@firestore-emulator/server``) for the suite.

``firestore_emulator`` (session) starts ``node tradingsite/firestore_emulator.mjs PORT`` on a free
port once and stops it at the end; a test may ``stop()`` and ``start()`` it again on the same
port (an outage). ``firestore`` (per test) points the project at it — ``FIRESTORE_PROJECT``,
``FIRESTORE_EMULATOR_HOST`` in settings and in the process environment (google-cloud-firestore
reads the latter) — under a project id of its own, so tests never see each other's documents.

A missing ``node`` or an emulator package that was not installed fails the tests that need it
with what to do; they are never skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tradingsite" / "firestore_emulator.mjs"
PACKAGE = ROOT / "node_modules" / "@firestore-emulator" / "server" / "package.json"
ARTIFACTS = ROOT / "test-artifacts"
READY_LINE = "firestore emulator ready"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class FirestoreEmulator:
    """The emulator as a child process on a fixed port, stoppable and restartable."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.log_path = ARTIFACTS / "firestore-emulator.log"
        self._popen: subprocess.Popen[bytes] | None = None

    @staticmethod
    def requirements_missing() -> str:
        node = shutil.which("node")
        if node is None:
            return (
                "node is not on PATH: the Firestore tests run the npm @firestore-emulator/server "
                "emulator (install Node.js 18 or newer, e.g. apt-get install nodejs npm, then "
                "npm ci)"
            )
        if not PACKAGE.exists():
            return (
                "the Firestore emulator package is not installed: run `npm ci` in the project "
                "(make test does it) to install @firestore-emulator/server"
            )
        return ""

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def start(self, *, timeout: float = 60.0) -> None:
        if self.running:
            return
        missing = self.requirements_missing()
        if missing:
            pytest.fail(missing, pytrace=False)
        ARTIFACTS.mkdir(exist_ok=True)
        with self.log_path.open("w") as log:
            self._popen = subprocess.Popen(
                ["node", str(SCRIPT), str(self.port)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not (READY_LINE in self.log() and _accepts_connections(self.port)):
            if self._popen.poll() is not None:
                pytest.fail(
                    f"the Firestore emulator exited with {self._popen.returncode}:\n{self.log()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"the Firestore emulator did not accept connections on {self.host} within "
                    f"{timeout} s:\n{self.log()}",
                    pytrace=False,
                )
            time.sleep(0.05)
        self._wait_until_answering(deadline=deadline)

    def _wait_until_answering(self, *, deadline: float) -> None:
        """Until a real read succeeds through google-cloud-firestore's gRPC stack.

        gRPC shares a process's connections to one address between channels; after an outage
        that connection waits out its reconnect back-off (seconds) even once the port is open,
        so the next test would see the outage. The probe waits that out for it.
        """
        import os

        from google.api_core.exceptions import GoogleAPICallError
        from google.cloud import firestore

        saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = self.host
        try:
            probe: Any = firestore.Client(project="emulator-probe")
        finally:
            if saved is None:
                del os.environ["FIRESTORE_EMULATOR_HOST"]
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = saved
        try:
            while True:
                try:
                    probe.collection("probe").limit(1).get(retry=None, timeout=5)
                    return
                except GoogleAPICallError as error:
                    if time.monotonic() > deadline:
                        pytest.fail(
                            f"the Firestore emulator on {self.host} does not answer: {error}",
                            pytrace=False,
                        )
                    time.sleep(0.2)
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop it (an outage): afterwards the port refuses connections. Its data is lost."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._popen = None
        deadline = time.monotonic() + 20
        while _accepts_connections(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    emulator = FirestoreEmulator(_free_port())
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@dataclass(frozen=True)
class FirestoreProject:
    """This test's Firestore: its own project id on the shared emulator."""

    project: str
    emulator: FirestoreEmulator

    def client(self) -> Any:
        """The guard's client for this project (the only way the project builds one)."""
        from tradingsite.guard import firestore_client_for_writing

        return firestore_client_for_writing()

    def documents(self, collection: str) -> dict[str, dict[str, Any]]:
        """Every document of ``collection``, read back with a collection query."""
        return {
            snapshot.id: snapshot.to_dict() or {}
            for snapshot in self.client().collection(collection).stream(retry=None, timeout=30)
        }


@pytest.fixture
def firestore(
    firestore_emulator: FirestoreEmulator,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FirestoreProject]:
    firestore_emulator.start()
    project = f"test-{uuid.uuid4().hex[:12]}"
    settings.FIRESTORE_PROJECT = project
    settings.FIRESTORE_EMULATOR_HOST = firestore_emulator.host
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    try:
        yield FirestoreProject(project=project, emulator=firestore_emulator)
    finally:
        # A test that stopped the emulator leaves it running for the next one.
        firestore_emulator.start()
