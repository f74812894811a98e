"""The environment guard (SPEC §4): who may write where; writing clients come only from it."""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from binance.client import Client as BinanceClient
from google.cloud.firestore import Client as FirestoreClient
from pytest_django.fixtures import Settings
from requests.adapters import HTTPAdapter

from tradingsite import guard
from tradingsite.guard import (
    FirestoreNotConfigured,
    GuardContext,
    ProdWriteRefused,
    binance_client_for_writing,
    check_command_write,
    check_firestore_write,
    check_venue_write,
    firestore_client_for_writing,
    resolve_binance_url,
    url_is_mainnet,
)

ROOT = Path(__file__).resolve().parent.parent.parent

# Written out by hand (not read from python-binance) so a library change cannot move them silently.
BINANCE_MAINNET_FUTURES_URL = "https://fapi.binance.com/fapi"
BINANCE_TESTNET_FUTURES_URL = "https://testnet.binancefuture.com/fapi"
LOOPBACK_URLS = (
    "http://127.0.0.1:9000/fapi",
    "http://localhost:9000/fapi",
    "http://[::1]:9000/fapi",
)
UNKNOWN_HOST_URL = "https://binance-proxy.example.net/fapi"

ENVS = ("dev", "test", "staging", "prod")
OVERWRITING_COMMANDS = ("risk_restore", "publish_state", "fs_doctor --repair", "cron_doctor_cache")


def is_real_money_host(host: str) -> bool:
    """Binance's production domain; its testnets live on binancefuture.com / binance.vision."""
    return host == "binance.com" or host.endswith(".binance.com")


# --- the matrix: writer x ENV x ALLOW_PROD_WRITES x --allow-prod ------------------------------


class Kind(Enum):
    ORDERS = "orders"
    FIRESTORE = "firestore"
    COMMAND = "command"


@dataclass(frozen=True)
class Writer:
    name: str
    kind: Kind
    # What the writer's target *is*, stated by the test, not computed by the guard.
    reaches_real_money_or_data: bool
    binance_url: str = BINANCE_MAINNET_FUTURES_URL
    firestore_project: str = ""
    firestore_emulator_host: str = ""


WRITERS = (
    Writer(
        "orders-to-mainnet",
        Kind.ORDERS,
        reaches_real_money_or_data=True,
        binance_url=resolve_binance_url(override="", testnet=False),
    ),
    Writer(
        "orders-to-testnet",
        Kind.ORDERS,
        reaches_real_money_or_data=False,
        binance_url=resolve_binance_url(override="", testnet=True),
    ),
    Writer(
        "orders-to-127.0.0.1",
        Kind.ORDERS,
        reaches_real_money_or_data=False,
        binance_url="http://127.0.0.1:9000/fapi",
    ),
    Writer(
        "orders-to-localhost",
        Kind.ORDERS,
        reaches_real_money_or_data=False,
        binance_url="http://localhost:9000/fapi",
    ),
    Writer(
        "orders-to-[::1]",
        Kind.ORDERS,
        reaches_real_money_or_data=False,
        binance_url="http://[::1]:9000/fapi",
    ),
    # An unknown host might be a proxy in front of mainnet: it must count as mainnet.
    Writer(
        "orders-to-unknown-host",
        Kind.ORDERS,
        reaches_real_money_or_data=True,
        binance_url=UNKNOWN_HOST_URL,
    ),
    Writer(
        "firestore-real-project",
        Kind.FIRESTORE,
        reaches_real_money_or_data=True,
        firestore_project="acme-trading",
    ),
    Writer(
        "firestore-emulator",
        Kind.FIRESTORE,
        reaches_real_money_or_data=False,
        firestore_project="acme-trading",
        firestore_emulator_host="127.0.0.1:8080",
    ),
    Writer("command-overwriting-state", Kind.COMMAND, reaches_real_money_or_data=True),
)


def expected_refusal(
    writer: Writer, *, env: str, allow_prod_writes: bool, allow_prod_flag: bool
) -> tuple[str, ...] | None:
    """SPEC §4 restated: None when the write is allowed, else what the refusal must tell to set.

    orders to mainnet             ENV=prod and ALLOW_PROD_WRITES=1
    orders to testnet / loopback  always
    real Firestore project        ENV=staging, or ENV=prod and ALLOW_PROD_WRITES=1
                                  (elsewhere: use the emulator)
    Firestore emulator            always
    command overwriting state     outside prod always; in prod ALLOW_PROD_WRITES=1 and --allow-prod
    """
    if not writer.reaches_real_money_or_data:
        return None
    if writer.kind is Kind.ORDERS:
        if env == "prod" and allow_prod_writes:
            return None
        return ("ENV=prod", "ALLOW_PROD_WRITES=1")
    if writer.kind is Kind.FIRESTORE:
        if env == "staging":
            return None
        if env == "prod":
            return None if allow_prod_writes else ("ALLOW_PROD_WRITES=1",)
        return ("FIRESTORE_EMULATOR_HOST",)
    if env != "prod":
        return None
    missing: list[str] = []
    if not allow_prod_writes:
        missing.append("ALLOW_PROD_WRITES=1")
    if not allow_prod_flag:
        missing.append("--allow-prod")
    return tuple(missing) or None


def attempt(writer: Writer, context: GuardContext, *, allow_prod_flag: bool) -> None:
    if writer.kind is Kind.ORDERS:
        check_venue_write(context)
    elif writer.kind is Kind.FIRESTORE:
        check_firestore_write(context)
    else:
        check_command_write(context, command="risk_restore", allow_prod_flag=allow_prod_flag)


def _matrix() -> list[Any]:
    return [
        pytest.param(
            writer,
            env,
            allow_prod_writes,
            allow_prod_flag,
            id=(
                f"{writer.name}-ENV={env}-ALLOW_PROD_WRITES={int(allow_prod_writes)}"
                f"-{'with' if allow_prod_flag else 'without'}-allow-prod"
            ),
        )
        for writer in WRITERS
        for env in ENVS
        for allow_prod_writes in (False, True)
        for allow_prod_flag in (False, True)
    ]


def refusal_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "tradingsite.guard" and record.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize(("writer", "env", "allow_prod_writes", "allow_prod_flag"), _matrix())
def test_the_guard_allows_or_refuses_every_writer_as_the_spec_says(
    writer: Writer,
    env: str,
    allow_prod_writes: bool,
    allow_prod_flag: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given
    context = GuardContext(
        env=env,
        allow_prod_writes=allow_prod_writes,
        binance_url=writer.binance_url,
        firestore_project=writer.firestore_project,
        firestore_emulator_host=writer.firestore_emulator_host,
    )
    must_name = expected_refusal(
        writer, env=env, allow_prod_writes=allow_prod_writes, allow_prod_flag=allow_prod_flag
    )
    caplog.set_level(logging.WARNING, logger="tradingsite.guard")

    # when / then
    if must_name is None:
        attempt(writer, context, allow_prod_flag=allow_prod_flag)
        assert refusal_records(caplog) == []
        return
    with pytest.raises(ProdWriteRefused) as refused:
        attempt(writer, context, allow_prod_flag=allow_prod_flag)
    message = str(refused.value)
    for setting in must_name:
        assert setting in message, f"the refusal should say to set {setting}: {message!r}"
    logged = [record.getMessage() for record in refusal_records(caplog)]
    assert len(logged) == 1, logged
    assert message in logged[0]


def test_the_matrix_covers_every_writer_env_and_switch() -> None:
    assert len(_matrix()) == len(WRITERS) * len(ENVS) * 2 * 2 == 144


@pytest.mark.parametrize("command", OVERWRITING_COMMANDS)
def test_it_refuses_an_overwriting_command_in_prod_naming_the_command(
    command: str, caplog: pytest.LogCaptureFixture
) -> None:
    context = GuardContext(
        env="prod", allow_prod_writes=True, binance_url=BINANCE_TESTNET_FUTURES_URL
    )
    caplog.set_level(logging.WARNING, logger="tradingsite.guard")

    with pytest.raises(ProdWriteRefused, match="--allow-prod") as refused:
        check_command_write(context, command=command, allow_prod_flag=False)

    assert command in str(refused.value)
    assert "ALLOW_PROD_WRITES=1 and" not in str(refused.value)  # only what is missing
    assert len(refusal_records(caplog)) == 1


def test_it_refuses_mainnet_orders_naming_the_current_env_and_the_ways_out() -> None:
    context = GuardContext(
        env="staging", allow_prod_writes=True, binance_url=BINANCE_MAINNET_FUTURES_URL
    )

    with pytest.raises(ProdWriteRefused) as refused:
        check_venue_write(context)

    message = str(refused.value)
    assert "ENV=staging" in message
    assert BINANCE_MAINNET_FUTURES_URL in message
    assert "BINANCE_TESTNET=1" in message
    assert "BINANCE_FUTURES_URL" in message


# --- resolving and classifying the Binance URL -------------------------------------------------


def test_the_default_resolved_url_is_binance_mainnet() -> None:
    assert resolve_binance_url(override="", testnet=False) == BINANCE_MAINNET_FUTURES_URL


def test_the_testnet_switch_resolves_to_binance_futures_testnet() -> None:
    assert resolve_binance_url(override="", testnet=True) == BINANCE_TESTNET_FUTURES_URL


def test_an_override_wins_over_the_testnet_switch_without_its_trailing_slash() -> None:
    resolved = resolve_binance_url(override="http://127.0.0.1:9000/fapi/", testnet=True)
    assert resolved == "http://127.0.0.1:9000/fapi"


@pytest.mark.parametrize(
    ("url", "is_mainnet"),
    [
        pytest.param(BINANCE_MAINNET_FUTURES_URL, True, id="mainnet"),
        pytest.param(BINANCE_TESTNET_FUTURES_URL, False, id="testnet"),
        pytest.param("http://127.0.0.1:9000/fapi", False, id="loopback-v4"),
        pytest.param("http://127.8.9.10/fapi", False, id="loopback-v4-whole-range"),
        pytest.param("http://[::1]:9000/fapi", False, id="loopback-v6"),
        pytest.param("http://localhost:9000/fapi", False, id="localhost"),
        pytest.param("http://LOCALHOST:9000/fapi", False, id="localhost-upper-case"),
        pytest.param(UNKNOWN_HOST_URL, True, id="unknown-host"),
        pytest.param("http://10.0.0.5:9000/fapi", True, id="private-address-is-not-loopback"),
        pytest.param("http://localhost.example.com/fapi", True, id="localhost-lookalike"),
        pytest.param("http://127.0.0.1@fapi.binance.com/fapi", True, id="loopback-as-userinfo"),
        pytest.param("", True, id="empty"),
    ],
)
def test_url_is_mainnet(url: str, is_mainnet: bool) -> None:
    assert url_is_mainnet(url) is is_mainnet


# --- handing out the Binance client ------------------------------------------------------------


@pytest.fixture
def network_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTTP request python-binance sends (answered 200 ``{}`` locally, never sent)."""
    calls: list[str] = []

    def send(
        self: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        calls.append(str(request.url))
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.url = str(request.url)
        response.request = request
        return response

    monkeypatch.setattr(HTTPAdapter, "send", send)
    return calls


@pytest.fixture
def binance_keys(settings: Settings) -> None:
    settings.BINANCE_API_KEY = "test-key"
    settings.BINANCE_API_SECRET = "test-secret"


def context_for(url: str, *, env: str = "dev", allow_prod_writes: bool = False) -> GuardContext:
    return GuardContext(env=env, allow_prod_writes=allow_prod_writes, binance_url=url)


@pytest.mark.parametrize("url", [*LOOPBACK_URLS, BINANCE_TESTNET_FUTURES_URL])
def test_it_hands_out_a_client_aimed_at_the_resolved_url_without_pinging(
    url: str, network_calls: list[str]
) -> None:
    client = binance_client_for_writing(context=context_for(url))

    assert isinstance(client, BinanceClient)
    assert url == client.FUTURES_URL
    assert client._create_futures_api_uri("order") == f"{url}/v1/order"
    assert network_calls == []


def test_it_hands_out_a_mainnet_client_in_prod_with_allow_prod_writes(
    network_calls: list[str],
) -> None:
    context = context_for(BINANCE_MAINNET_FUTURES_URL, env="prod", allow_prod_writes=True)

    client = binance_client_for_writing(context=context)

    assert client._create_futures_api_uri("order") == f"{BINANCE_MAINNET_FUTURES_URL}/v1/order"
    assert network_calls == []


@pytest.mark.parametrize(
    ("env", "allow_prod_writes", "url"),
    [
        *[
            pytest.param(
                env, allow, BINANCE_MAINNET_FUTURES_URL, id=f"ENV={env}-ALLOW={int(allow)}"
            )
            for env in ENVS
            for allow in (False, True)
            if not (env == "prod" and allow)
        ],
        pytest.param("dev", False, UNKNOWN_HOST_URL, id="unknown-host-from-dev"),
    ],
)
def test_it_refuses_a_mainnet_client_before_constructing_anything(
    env: str,
    allow_prod_writes: bool,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    constructed: list[object] = []
    monkeypatch.setattr(BinanceClient, "__init__", lambda self, *a, **k: constructed.append(self))
    caplog.set_level(logging.WARNING, logger="tradingsite.guard")

    with pytest.raises(ProdWriteRefused, match="ALLOW_PROD_WRITES=1"):
        binance_client_for_writing(
            context=context_for(url, env=env, allow_prod_writes=allow_prod_writes)
        )

    assert constructed == []
    assert len(refusal_records(caplog)) == 1


class _RecordingBinance(BaseHTTPRequestHandler):
    """A stand-in futures server on loopback: records each request and accepts the order."""

    requests_seen: list[tuple[str, str, dict[str, list[str]]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        path = urlsplit(self.path)
        fields = parse_qs(body) | parse_qs(path.query)
        self.requests_seen.append(("POST", path.path, fields))
        payload = json.dumps({"orderId": 1, "status": "NEW"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_binance() -> Iterator[tuple[str, list[tuple[str, str, dict[str, list[str]]]]]]:
    seen: list[tuple[str, str, dict[str, list[str]]]] = []
    handler = type("Handler", (_RecordingBinance,), {"requests_seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fapi", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("binance_keys")
def test_an_order_reaches_the_loopback_override_signed_with_a_short_recv_window(
    loopback_binance: tuple[str, list[tuple[str, str, dict[str, list[str]]]]],
) -> None:
    url, seen = loopback_binance
    client = binance_client_for_writing(context=context_for(url))

    answer = client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001"
    )

    assert answer == {"orderId": 1, "status": "NEW"}
    assert len(seen) == 1
    method, path, fields = seen[0]
    assert (method, path) == ("POST", "/fapi/v1/order")
    assert fields["symbol"] == ["BTCUSDT"]
    assert "signature" in fields
    # SPEC §13: python-binance sends recvWindow=10000 unless told otherwise.
    assert fields["recvWindow"] == [str(guard.RECV_WINDOW_MS)] == ["5000"]


@pytest.mark.usefixtures("binance_keys")
@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/fapi", BINANCE_TESTNET_FUTURES_URL])
def test_it_refuses_every_route_to_mainnet_from_a_client_handed_out_for_a_test_server(
    url: str, network_calls: list[str]
) -> None:
    # given a client the guard handed out because its futures URL is not mainnet
    client = binance_client_for_writing(context=context_for(url))
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}

    # when every order-placing method of python-binance is tried (spot, margin, coin-M, portfolio)
    for place in (
        client.futures_create_order,
        client.create_order,
        client.create_margin_order,
        client.futures_coin_create_order,
        client.papi_create_um_order,
    ):
        with contextlib.suppress(ProdWriteRefused):
            place(**order)

    # then nothing was sent to Binance's production domain, over HTTP or the websocket API
    sent_to = [urlsplit(call).hostname or "" for call in network_calls]
    assert sent_to, "the futures order should have gone to the test server"
    assert [host for host in sent_to if is_real_money_host(host)] == []
    for websocket in (client.ws_api, client.ws_future):
        assert not is_real_money_host(urlsplit(websocket._url).hostname or "")


# --- handing out the Firestore client ----------------------------------------------------------


@pytest.fixture
def fresh_firestore_client_cache() -> Iterator[None]:
    guard._firestore_client.cache_clear()
    yield
    guard._firestore_client.cache_clear()


@pytest.mark.parametrize("env", ENVS)
def test_it_reports_firestore_not_configured_without_a_project(env: str) -> None:
    context = GuardContext(env=env, allow_prod_writes=True, binance_url=BINANCE_TESTNET_FUTURES_URL)

    with pytest.raises(FirestoreNotConfigured, match="FIRESTORE_PROJECT"):
        firestore_client_for_writing(context=context)


@pytest.mark.parametrize("env", ["dev", "test"])
def test_it_refuses_a_real_firestore_project_outside_staging_and_prod(
    env: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    constructed: list[object] = []
    monkeypatch.setattr(FirestoreClient, "__init__", lambda self, *a, **k: constructed.append(self))
    context = GuardContext(
        env=env,
        allow_prod_writes=True,
        binance_url=BINANCE_TESTNET_FUTURES_URL,
        firestore_project="acme-trading",
    )
    caplog.set_level(logging.WARNING, logger="tradingsite.guard")

    with pytest.raises(ProdWriteRefused, match="FIRESTORE_EMULATOR_HOST"):
        firestore_client_for_writing(context=context)

    assert constructed == []
    assert len(refusal_records(caplog)) == 1


@pytest.mark.usefixtures("fresh_firestore_client_cache")
def test_it_hands_out_an_emulator_client_from_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8080")
    context = GuardContext(
        env="dev",
        allow_prod_writes=False,
        binance_url=BINANCE_MAINNET_FUTURES_URL,
        firestore_project="demo-tradingsite",
        firestore_emulator_host="127.0.0.1:8080",
    )

    client = firestore_client_for_writing(context=context)

    assert isinstance(client, FirestoreClient)
    assert client.project == "demo-tradingsite"
    assert client._emulator_host == "127.0.0.1:8080"
    assert firestore_client_for_writing(context=context) is client


# --- nobody but the guard builds a writing client ------------------------------------------------

CLIENT_CLASS_NAMES = frozenset({"Client", "AsyncClient"})
SKIPPED_DIRECTORIES = frozenset(
    {".venv", "node_modules", "tests", "migrations", "var", "__pycache__"}
)
THE_GUARD = "tradingsite/guard.py"


def _is_client_package(module: str) -> bool:
    """python-binance (``binance``) or google-cloud-firestore (``google.cloud.firestore*``)."""
    return module == "binance" or module.startswith(("binance.", "google.cloud.firestore"))


def _is_writing_client(dotted: str) -> bool:
    module, _, name = dotted.rpartition(".")
    return name in CLIENT_CLASS_NAMES and _is_client_package(module)


def _dotted_name(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """``firestore.Client`` → ``google.cloud.firestore.Client`` through the file's imports."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def writing_client_references(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import of, or attribute reaching, a writing client class."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = dotted
                if _is_writing_client(dotted) or (
                    alias.name == "*" and _is_client_package(node.module)
                ):
                    found.append((node.lineno, dotted))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            reached = _dotted_name(node, aliases)
            if reached and _is_writing_client(reached):
                found.append((node.lineno, reached))
    return sorted(found)


def project_python_files(root: Path) -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if name not in SKIPPED_DIRECTORIES and not name.startswith(".")
        )
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(directory) / name


def writing_clients_built_outside_the_guard(root: Path) -> list[str]:
    return [
        f"{path.relative_to(root).as_posix()}:{line}: {dotted}"
        for path in project_python_files(root)
        if path.relative_to(root).as_posix() != THE_GUARD
        for line, dotted in writing_client_references(path.read_text())
    ]


def test_writing_clients_are_built_only_in_the_guard() -> None:
    scanned = {path.relative_to(ROOT).as_posix() for path in project_python_files(ROOT)}
    assert {THE_GUARD, "manage.py", "tradingsite/settings.py"} <= scanned
    assert any(path.startswith("doctor/") for path in scanned)
    assert any(path.startswith("routing/") for path in scanned)
    assert not any(path.startswith(("tests/", ".venv/", "node_modules/")) for path in scanned)
    assert not any("/migrations/" in path for path in scanned)

    assert writing_clients_built_outside_the_guard(ROOT) == []


def test_the_scanner_sees_the_clients_the_guard_itself_builds() -> None:
    found = {dotted for _, dotted in writing_client_references((ROOT / THE_GUARD).read_text())}
    assert {"binance.client.Client", "google.cloud.firestore.Client"} <= found


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("from binance.client import Client\n", id="from-binance.client"),
        pytest.param("from binance import AsyncClient as C\n", id="from-binance-as"),
        pytest.param("import binance\nc = binance.Client(ping=False)\n", id="binance.Client"),
        pytest.param(
            "import binance.client\nbinance.client.Client()\n", id="binance.client.Client"
        ),
        pytest.param("from binance.client import *\n", id="star-import"),
        pytest.param(
            "def venue():\n    from binance.async_client import AsyncClient\n    return 1\n",
            id="inside-a-function",
        ),
        pytest.param(
            "from google.cloud import firestore\nfirestore.Client(project='p')\n",
            id="firestore.Client",
        ),
        pytest.param(
            "import google.cloud.firestore as fs\nfs.AsyncClient()\n", id="firestore-module-alias"
        ),
        pytest.param("from google.cloud.firestore_v1 import Client\n", id="firestore_v1"),
        pytest.param(
            "from google.cloud import firestore_v1\nfirestore_v1.client.Client()\n",
            id="firestore_v1.client.Client",
        ),
    ],
)
def test_the_scanner_catches_a_writing_client_built_outside_the_guard(
    source: str, tmp_path: Path
) -> None:
    # given a project where a new app builds its own client
    (tmp_path / "tradingsite").mkdir()
    (tmp_path / "tradingsite" / "guard.py").write_text("from binance.client import Client\n")
    (tmp_path / "newapp").mkdir()
    (tmp_path / "newapp" / "venues.py").write_text(source)

    # when / then
    found = writing_clients_built_outside_the_guard(tmp_path)
    assert found
    assert all(line.startswith("newapp/venues.py:") for line in found)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            "from binance.exceptions import BinanceAPIException\n", id="binance-exceptions"
        ),
        pytest.param("from binance.base_client import BaseClient\n", id="binance-base-client"),
        pytest.param(
            "from google.cloud.firestore import SERVER_TIMESTAMP\n", id="firestore-constant"
        ),
        pytest.param("from django.test import Client\nClient()\n", id="django-test-client"),
        pytest.param("import redis\nredis.Redis.from_url('redis://x')\n", id="redis"),
    ],
)
def test_the_scanner_leaves_other_imports_alone(source: str, tmp_path: Path) -> None:
    (tmp_path / "newapp").mkdir()
    (tmp_path / "newapp" / "module.py").write_text(source)

    assert writing_clients_built_outside_the_guard(tmp_path) == []


def test_the_scanner_skips_tests_migrations_and_installed_packages(tmp_path: Path) -> None:
    for skipped in ("tests", "newapp/migrations", ".venv/lib", "node_modules/pkg"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "module.py").write_text("from binance.client import Client\n")

    assert writing_clients_built_outside_the_guard(tmp_path) == []
