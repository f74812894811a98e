"""The configuration contract (SPEC §3): typed readers, one clear line for a bad variable."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tradingsite.config import ConfigError, Environment, exit_on_config_error

ROOT = Path(__file__).resolve().parent.parent.parent
STRONG_SECRET_KEY = secrets.token_urlsafe(64)  # 86 characters


def environment(**values: str) -> Environment:
    return Environment(values)


# --- the typed readers, over a plain dict ------------------------------------------------------


def test_a_config_error_reads_as_variable_then_problem() -> None:
    error = ConfigError("SYMBOLS", "must name at least one symbol")
    assert str(error) == "SYMBOLS: must name at least one symbol"
    assert error.variable == "SYMBOLS"


def test_text_falls_back_to_the_default_when_unset_or_blank_and_is_stripped() -> None:
    env = environment(BLANK="   ", PADDED="  value  ")
    assert env.text("MISSING", "fallback") == "fallback"
    assert env.text("BLANK", "fallback") == "fallback"
    assert env.text("PADDED") == "value"
    assert not env.is_set("BLANK")
    assert env.is_set("PADDED")


def test_it_refuses_a_missing_required_variable_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^SECRET_KEY: required when ENV=prod$") as error:
        environment(SECRET_KEY=" ").required("SECRET_KEY", "when ENV=prod")
    assert error.value.variable == "SECRET_KEY"


def test_choice_defaults_and_ignores_case() -> None:
    assert environment().choice("ENV", ("dev", "prod"), "dev") == "dev"
    assert environment(ENV="PROD").choice("ENV", ("dev", "prod"), "dev") == "prod"


def test_it_refuses_a_choice_outside_the_list_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"^VENUE: must be one of paper, binance, got 'kraken'$"):
        environment(VENUE="kraken").choice("VENUE", ("paper", "binance"), "paper")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("true", True), ("YES", True), ("on", True)],
        *[("0", False), ("false", False), ("no", False), ("off", False), ("", False)],
    ],
)
def test_flag_reads_the_usual_words(raw: str, expected: bool) -> None:
    assert environment(ALLOW_PROD_WRITES=raw).flag("ALLOW_PROD_WRITES") is expected


def test_an_unset_flag_is_off() -> None:
    assert environment().flag("ALLOW_PROD_WRITES") is False


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled"])
def test_it_refuses_a_flag_that_is_neither_on_nor_off(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^ALLOW_PROD_WRITES: must be 1 or 0"):
        environment(ALLOW_PROD_WRITES=raw).flag("ALLOW_PROD_WRITES")


def test_positive_int_reads_a_whole_number_or_the_default() -> None:
    assert environment().positive_int("EXECUTOR_INTERVAL_SECONDS", 5) == 5
    assert (
        environment(EXECUTOR_INTERVAL_SECONDS=" 7 ").positive_int("EXECUTOR_INTERVAL_SECONDS", 5)
        == 7
    )


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "2.5", "1e3"])
def test_it_refuses_an_interval_that_is_not_a_positive_whole_number(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^EXECUTOR_INTERVAL_SECONDS: must be"):
        environment(EXECUTOR_INTERVAL_SECONDS=raw).positive_int("EXECUTOR_INTERVAL_SECONDS", 5)


def test_positive_decimal_reads_a_number_or_the_default() -> None:
    assert environment().positive_decimal("BINANCE_HTTP_TIMEOUT", "10") == Decimal(10)
    assert environment(BINANCE_HTTP_TIMEOUT="2.5").positive_decimal(
        "BINANCE_HTTP_TIMEOUT", "10"
    ) == Decimal("2.5")


@pytest.mark.parametrize("raw", ["-1", "0", "abc", "nan", "inf"])
def test_it_refuses_a_timeout_that_is_not_a_positive_finite_number(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^BINANCE_HTTP_TIMEOUT: must be"):
        environment(BINANCE_HTTP_TIMEOUT=raw).positive_decimal("BINANCE_HTTP_TIMEOUT", "10")


def test_csv_splits_and_drops_blanks() -> None:
    assert environment(SYMBOLS=" BTCUSDT, ,ETHUSDT ,").csv("SYMBOLS", "X") == ["BTCUSDT", "ETHUSDT"]
    assert environment().csv("SYMBOLS", "BTCUSDT,ETHUSDT") == ["BTCUSDT", "ETHUSDT"]


def test_url_accepts_the_listed_schemes_and_unset_means_empty() -> None:
    assert environment().url("BINANCE_FUTURES_URL", ("http", "https")) == ""
    url = "http://127.0.0.1:9000/fapi"
    assert environment(BINANCE_FUTURES_URL=url).url("BINANCE_FUTURES_URL", ("http", "https")) == url
    socket_url = "unix:///srv/tradingsite/var/redis.sock"
    assert environment(REDIS_URL=socket_url).url("REDIS_URL", ("redis", "unix")) == socket_url


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("ftp://x", "must start with http://, https://"),
        ("127.0.0.1:9000/fapi", "must start with"),
        ("http:///fapi", "has no host"),
        ("http://[::1/fapi", "is not a valid URL"),
        ("http://127.0.0.1:notaport/fapi", "is not a valid URL"),
        ("http://127.0.0.1:99999/fapi", "is not a valid URL"),
    ],
)
def test_it_refuses_a_malformed_url_naming_the_variable(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"^BINANCE_FUTURES_URL: ") as error:
        environment(BINANCE_FUTURES_URL=raw).url("BINANCE_FUTURES_URL", ("http", "https"))
    assert problem in str(error.value)


def test_database_parses_postgres_and_sqlite_urls() -> None:
    postgres = environment(DATABASE_URL="postgres://u:p@db.example.com:5432/trading").database(
        "DATABASE_URL", "sqlite:////tmp/unused.sqlite3"
    )
    assert postgres["ENGINE"] == "django.db.backends.postgresql"
    assert (postgres["HOST"], postgres["PORT"], postgres["NAME"]) == (
        "db.example.com",
        5432,
        "trading",
    )

    sqlite = environment().database("DATABASE_URL", "sqlite:////tmp/default.sqlite3")
    assert sqlite["ENGINE"] == "django.db.backends.sqlite3"
    assert sqlite["NAME"] == "/tmp/default.sqlite3"


@pytest.mark.parametrize("raw", ["mysql://u@h/db", "postgres://u@h:notaport/db"])
def test_it_refuses_a_database_url_it_cannot_use(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: "):
        environment(DATABASE_URL=raw).database("DATABASE_URL", "sqlite:////tmp/x.sqlite3")


def test_an_entry_point_turns_a_config_error_into_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited, exit_on_config_error():
        environment(VENUE="kraken").choice("VENUE", ("paper", "binance"), "paper")

    assert exited.value.code == 2
    assert exited.value.__context__ is None or exited.value.__suppress_context__
    assert capsys.readouterr().err == (
        "configuration error: VENUE: must be one of paper, binance, got 'kraken'\n"
    )


# --- real start-ups ------------------------------------------------------------------------------


def start(command: list[str], **overrides: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with the test session's environment plus ``overrides``.

    An empty override stands for "unset": the readers treat a blank variable as missing, and a
    present-but-empty variable also keeps a developer's .env file from filling it in.
    """
    env = {**os.environ, **overrides}
    return subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_naming(result: subprocess.CompletedProcess[str], variable: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {variable}:"), lines[0]
    assert result.returncode == 2, result


PRODUCTION = {
    "ENV": "prod",
    "SECRET_KEY": STRONG_SECRET_KEY,
    "ALLOWED_HOSTS": "trading.example.com",
    # Production names its database and Redis; `check --deploy` connects to neither.
    "DATABASE_URL": "postgres://trading@db.example.com:5432/trading",
    "REDIS_URL": "redis://redis.example.com:6379/0",
}

BAD_CONFIGURATIONS = [
    pytest.param({**PRODUCTION, "SECRET_KEY": ""}, "SECRET_KEY", id="prod-without-SECRET_KEY"),
    pytest.param(
        {**PRODUCTION, "ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS", id="prod-without-ALLOWED_HOSTS"
    ),
    pytest.param(
        {**PRODUCTION, "DATABASE_URL": ""}, "DATABASE_URL", id="prod-without-DATABASE_URL"
    ),
    pytest.param({**PRODUCTION, "REDIS_URL": ""}, "REDIS_URL", id="prod-without-REDIS_URL"),
    pytest.param(
        {**PRODUCTION, "ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS", id="prod-with-ALLOWED_HOSTS=*"
    ),
    pytest.param(
        {**PRODUCTION, "SECRET_KEY": "django-insecure-" + STRONG_SECRET_KEY},
        "SECRET_KEY",
        id="prod-with-django-insecure-key",
    ),
    pytest.param({"BINANCE_HTTP_TIMEOUT": "1e999"}, "BINANCE_HTTP_TIMEOUT", id="huge-timeout"),
    pytest.param({"ENV": "production"}, "ENV", id="ENV=production"),
    pytest.param(
        {"EXECUTOR_INTERVAL_SECONDS": "abc"}, "EXECUTOR_INTERVAL_SECONDS", id="interval-abc"
    ),
    pytest.param({"EXECUTOR_INTERVAL_SECONDS": "0"}, "EXECUTOR_INTERVAL_SECONDS", id="interval-0"),
    pytest.param({"VENUE": "kraken"}, "VENUE", id="VENUE=kraken"),
    pytest.param(
        {"VENUE": "binance", "BINANCE_API_KEY": "", "BINANCE_API_SECRET": ""},
        "BINANCE_API_KEY",
        id="VENUE=binance-without-keys",
    ),
    pytest.param(
        {"VENUE": "binance", "BINANCE_API_KEY": "key", "BINANCE_API_SECRET": ""},
        "BINANCE_API_SECRET",
        id="VENUE=binance-without-secret",
    ),
    pytest.param({"SYMBOLS": "btc-usdt"}, "SYMBOLS", id="SYMBOLS=btc-usdt"),
    pytest.param({"SYMBOLS": ","}, "SYMBOLS", id="SYMBOLS-empty-list"),
    pytest.param({"BINANCE_FUTURES_URL": "ftp://x"}, "BINANCE_FUTURES_URL", id="futures-url-ftp"),
    pytest.param(
        {"BINANCE_FUTURES_URL": "http://[::1/fapi"}, "BINANCE_FUTURES_URL", id="futures-url-broken"
    ),
    pytest.param({"BINANCE_TESTNET": "please"}, "BINANCE_TESTNET", id="BINANCE_TESTNET=please"),
    pytest.param({"DATABASE_URL": "mysql://x"}, "DATABASE_URL", id="DATABASE_URL=mysql"),
    pytest.param({"REDIS_URL": "redis://cache:notaport/0"}, "REDIS_URL", id="REDIS_URL-bad-port"),
    pytest.param({"ALLOW_PROD_WRITES": "maybe"}, "ALLOW_PROD_WRITES", id="ALLOW_PROD_WRITES=maybe"),
    pytest.param(
        {"FIRESTORE_EMULATOR_HOST": "nonsense"}, "FIRESTORE_EMULATOR_HOST", id="emulator-nonsense"
    ),
    pytest.param({"BINANCE_HTTP_TIMEOUT": "-1"}, "BINANCE_HTTP_TIMEOUT", id="timeout-negative"),
    pytest.param(
        {"ALERT_WEBHOOK_URL": "hooks.example.com"}, "ALERT_WEBHOOK_URL", id="webhook-no-scheme"
    ),
]


@pytest.mark.parametrize(("overrides", "variable"), BAD_CONFIGURATIONS)
def test_it_refuses_to_start_with_a_bad_variable_in_one_line(
    overrides: dict[str, str], variable: str
) -> None:
    result = start(["manage.py", "check"], **overrides)

    assert_one_line_naming(result, variable)
    assert result.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(
            ["-m", "celery", "-A", "tradingsite", "worker", "--pool", "solo"], id="worker"
        ),
        pytest.param(["-m", "celery", "-A", "tradingsite", "beat"], id="beat"),
        pytest.param(["-c", "import tradingsite.asgi"], id="asgi-import"),
        pytest.param(
            ["-m", "daphne", "-b", "127.0.0.1", "-p", "0", "tradingsite.asgi:application"],
            id="daphne",
        ),
    ],
)
def test_every_entry_point_refuses_a_bad_variable_in_one_line(command: list[str]) -> None:
    result = start(command, EXECUTOR_INTERVAL_SECONDS="abc")

    assert result.returncode != 0
    assert "configuration error: EXECUTOR_INTERVAL_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr
    assert_one_line_naming(result, "EXECUTOR_INTERVAL_SECONDS")


def test_production_settings_pass_the_deploy_check() -> None:
    # DATABASE_URL and REDIS_URL are the test session's own (os.environ), as in a real deploy.
    result = start(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    "weak_key",
    [
        pytest.param("short", id="short"),
        pytest.param("a" * 60, id="one-character-repeated"),
    ],
)
def test_it_refuses_a_weak_secret_key_in_prod_in_one_line(weak_key: str) -> None:
    result = start(["manage.py", "check", "--deploy"], **{**PRODUCTION, "SECRET_KEY": weak_key})

    assert_one_line_naming(result, "SECRET_KEY")
