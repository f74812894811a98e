"""The local Binance test server and a venue on it, through python-binance's real HTTP stack."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from routing.binance_testserver import BinanceTestServer
from routing.resilience import RetryPolicy
from routing.venues import BinanceFutures
from tradingsite.guard import GuardContext, binance_client_for_writing

STARTING_BALANCE = Decimal("100000")


@pytest.fixture
def server() -> Iterator[BinanceTestServer]:
    with BinanceTestServer(balance=STARTING_BALANCE) as running:
        yield running


@pytest.fixture
def client(server: BinanceTestServer, settings: Any) -> Any:
    """A python-binance client for the test server, handed out by the environment guard."""
    settings.BINANCE_API_KEY = server.api_key
    settings.BINANCE_API_SECRET = server.api_secret
    context = GuardContext(env="test", allow_prod_writes=False, binance_url=server.url)
    return binance_client_for_writing(context=context)


@pytest.fixture
def venue(client: Any) -> BinanceFutures:
    return BinanceFutures(client=client, policy=RetryPolicy(sleep=lambda _: None))
