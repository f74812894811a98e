"""The environment guard (SPEC §4): the one place that decides whether a write may reach production.

A *prod write* changes the outside world in production: an order on Binance mainnet, a write
to a real (non-emulator) Firestore project, or a command that overwrites production state.
Writing clients for Binance and Firestore are built here and nowhere else (a test scans the
code for that), so no later module can forget to ask.

The rules, in one table:

====================================  ==========================================================
writer                                allowed when
====================================  ==========================================================
orders to Binance mainnet             ENV=prod and ALLOW_PROD_WRITES=1
orders to the testnet or loopback     always (they cannot lose real money)
writes to a real Firestore project    ENV=staging, or ENV=prod and ALLOW_PROD_WRITES=1
writes to the Firestore emulator      always
a command overwriting state           outside prod always; in prod ALLOW_PROD_WRITES=1 *and*
                                      the command's own ``--allow-prod`` flag, every time
====================================  ==========================================================

Mainnet is decided from the resolved base URL, whatever ``ENV`` says: any host that is not
Binance's futures testnet or a loopback address counts as mainnet (an unknown proxy fails safe).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from binance.base_client import BaseClient
from django.conf import settings
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

if TYPE_CHECKING:
    from binance.client import Client as BinanceClient
    from google.cloud.firestore import Client as FirestoreClient

__all__ = [
    "MAINNET_FUTURES_URL",
    "RECV_WINDOW_MS",
    "TESTNET_FUTURES_URL",
    "BinanceClient",
    "FirestoreClient",
    "FirestoreNotConfigured",
    "GuardContext",
    "ProdWriteRefused",
    "binance_client_for_writing",
    "check_command_write",
    "check_firestore_write",
    "check_venue_write",
    "firestore_client_for_writing",
    "guard_context",
    "resolve_binance_url",
    "url_is_mainnet",
]

logger = logging.getLogger(__name__)

MAINNET_FUTURES_URL: str = BaseClient.FUTURES_URL.format("com")
TESTNET_FUTURES_URL: str = BaseClient.FUTURES_TESTNET_URL
_TESTNET_HOSTS = frozenset({urlsplit(TESTNET_FUTURES_URL).hostname})
# Binance rejects recvWindow above 60 s and python-binance sends 10 s; 5 s bounds how stale a
# signed order may be when it arrives (SPEC §13).
RECV_WINDOW_MS = 5000


class ProdWriteRefused(PermissionError):
    """A write to production was refused; the message says exactly what to set."""


class FirestoreNotConfigured(RuntimeError):
    """FIRESTORE_PROJECT is unset: the mirror is disabled (the doctor warns about it)."""


@dataclass(frozen=True)
class GuardContext:
    """The inputs of every guard decision, read from settings by ``guard_context()``."""

    env: str
    allow_prod_writes: bool
    binance_url: str
    firestore_project: str = ""
    firestore_emulator_host: str = ""

    @property
    def venue_is_mainnet(self) -> bool:
        return url_is_mainnet(self.binance_url)

    @property
    def firestore_is_real(self) -> bool:
        return bool(self.firestore_project) and not self.firestore_emulator_host


def resolve_binance_url(*, override: str, testnet: bool) -> str:
    """The futures base URL in force: the override, else the testnet, else mainnet."""
    if override:
        return override.rstrip("/")
    return TESTNET_FUTURES_URL if testnet else MAINNET_FUTURES_URL


def url_is_mainnet(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in _TESTNET_HOSTS or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def guard_context() -> GuardContext:
    return GuardContext(
        env=settings.ENV,
        allow_prod_writes=settings.ALLOW_PROD_WRITES,
        binance_url=resolve_binance_url(
            override=settings.BINANCE_FUTURES_URL, testnet=settings.BINANCE_TESTNET
        ),
        firestore_project=settings.FIRESTORE_PROJECT,
        firestore_emulator_host=settings.FIRESTORE_EMULATOR_HOST,
    )


def _refuse(message: str) -> ProdWriteRefused:
    logger.warning("prod write refused: %s", message)
    return ProdWriteRefused(message)


def check_venue_write(context: GuardContext) -> None:
    """Raise ProdWriteRefused unless orders may be sent to ``context.binance_url``."""
    if not context.venue_is_mainnet:
        return
    if context.env == "prod" and context.allow_prod_writes:
        return
    raise _refuse(
        f"orders to Binance mainnet ({context.binance_url}) need ENV=prod and "
        f"ALLOW_PROD_WRITES=1 (now ENV={context.env}, "
        f"ALLOW_PROD_WRITES={int(context.allow_prod_writes)}); to trade elsewhere set "
        "BINANCE_TESTNET=1 or BINANCE_FUTURES_URL to a test server"
    )


def check_firestore_write(context: GuardContext) -> None:
    """Raise ProdWriteRefused unless documents may be written to the configured Firestore."""
    if not context.firestore_is_real:
        return
    if context.env == "staging" or (context.env == "prod" and context.allow_prod_writes):
        return
    if context.env == "prod":
        raise _refuse(
            f"writes to Firestore project {context.firestore_project!r} need "
            "ALLOW_PROD_WRITES=1 with ENV=prod"
        )
    raise _refuse(
        f"writes to the real Firestore project {context.firestore_project!r} are not allowed "
        f"from ENV={context.env}; set FIRESTORE_EMULATOR_HOST to use the emulator"
    )


def check_command_write(context: GuardContext, *, command: str, allow_prod_flag: bool) -> None:
    """Raise ProdWriteRefused unless ``command`` may overwrite state in this environment."""
    if context.env != "prod":
        return
    missing = [
        what
        for what, present in (
            ("ALLOW_PROD_WRITES=1", context.allow_prod_writes),
            ("--allow-prod", allow_prod_flag),
        )
        if not present
    ]
    if missing:
        raise _refuse(
            f"{command} overwrites production state: it needs {' and '.join(missing)} "
            "(both, every time, with ENV=prod)"
        )


class _RefuseMainnetAdapter(HTTPAdapter):
    """Transport of a client handed out for a test server: no request of it may reach mainnet."""

    def __init__(self, context: GuardContext) -> None:
        super().__init__()
        self._context = context

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        url = request.url or ""
        if url_is_mainnet(url):
            raise _refuse(
                f"{urlsplit(url).hostname} is neither the futures testnet nor loopback and this "
                f"client was handed out for {self._context.binance_url} "
                f"(ENV={self._context.env}); orders to Binance mainnet need ENV=prod and "
                "ALLOW_PROD_WRITES=1"
            )
        return super().send(request, *args, **kwargs)


def binance_client_for_writing(*, context: GuardContext | None = None) -> BinanceClient:
    """A python-binance client for placing and cancelling futures orders, once the guard allows."""
    from binance.client import Client

    ctx = context or guard_context()
    check_venue_write(ctx)
    off_mainnet = not ctx.venue_is_mainnet
    # python-binance's testnet mode points its other routes (spot, coin-M, options and the
    # websocket order API) at Binance's testnets, so only mainnet contexts can reach mainnet.
    client = Client(
        settings.BINANCE_API_KEY or None,
        settings.BINANCE_API_SECRET or None,
        requests_params={"timeout": settings.BINANCE_HTTP_TIMEOUT},
        testnet=off_mainnet,
        ping=False,
    )
    # The resolved URL (mainnet, testnet or override) is where futures orders go; the client
    # reads FUTURES_TESTNET_URL in testnet mode and FUTURES_URL otherwise.
    client.FUTURES_URL = client.FUTURES_TESTNET_URL = ctx.binance_url
    client.REQUEST_RECVWINDOW = RECV_WINDOW_MS
    if off_mainnet:
        # Margin and portfolio-margin routes have no testnet and ignore testnet mode.
        adapter = _RefuseMainnetAdapter(ctx)
        client.session.mount("https://", adapter)
        client.session.mount("http://", adapter)
    return client


def firestore_client_for_writing(*, context: GuardContext | None = None) -> FirestoreClient:
    """The process's Firestore client (created once), once the guard allows writing to it."""
    ctx = context or guard_context()
    if not ctx.firestore_project:
        raise FirestoreNotConfigured("FIRESTORE_PROJECT is not set: the Firestore mirror is off")
    check_firestore_write(ctx)
    return _firestore_client(ctx.firestore_project, ctx.firestore_emulator_host)


@cache
def _firestore_client(project: str, emulator_host: str) -> FirestoreClient:
    # The emulator switch is google-cloud-firestore's own FIRESTORE_EMULATOR_HOST variable;
    # emulator_host is part of the cache key so a changed switch never reuses a real client.
    import os

    from google.cloud import firestore

    if os.environ.get("FIRESTORE_EMULATOR_HOST", "") != emulator_host:
        raise RuntimeError(
            "FIRESTORE_EMULATOR_HOST in the process environment differs from settings"
        )
    return firestore.Client(project=project)
