"""Settings for every process, driven only by the environment variables of SPEC §3."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django_stubs_ext

from tradingsite.config import ENVIRONMENTS, VENUES, ConfigError, Environment, read_dotenv

# Lets annotations such as ModelAdmin[Heartbeat] run (they are generic only in the stubs).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)
(VAR_DIR / "static").mkdir(exist_ok=True)

read_dotenv(BASE_DIR / ".env")
env = Environment()

ENV = env.choice("ENV", ENVIRONMENTS, "dev")
IS_PROD = ENV == "prod"
DEBUG = ENV == "dev"
ALLOW_PROD_WRITES = env.flag("ALLOW_PROD_WRITES")


def _dev_secret_key() -> str:
    # One generated key per checkout, kept in var/ so logins survive restarts and every
    # process of the dev stack signs with the same key.
    path = VAR_DIR / "secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


if ENV in {"staging", "prod"}:
    # Deployed environments never fall back to a generated key or to localhost.
    SECRET_KEY = env.required("SECRET_KEY", f"when ENV={ENV}")
    if (
        len(SECRET_KEY) < 50
        or len(set(SECRET_KEY)) < 5
        or SECRET_KEY.startswith("django-insecure-")
    ):
        raise ConfigError(
            "SECRET_KEY", "must be a random value of at least 50 characters (5 distinct ones)"
        )
    ALLOWED_HOSTS = env.csv("ALLOWED_HOSTS", "")
    if not ALLOWED_HOSTS:
        raise ConfigError("ALLOWED_HOSTS", f"required when ENV={ENV}")
    if "*" in ALLOWED_HOSTS:
        raise ConfigError("ALLOWED_HOSTS", f"must name the hosts, not '*', when ENV={ENV}")
    # The embedded defaults (a SQLite file, the dev Redis socket) are for one machine only.
    env.required("DATABASE_URL", f"when ENV={ENV}")
    env.required("REDIS_URL", f"when ENV={ENV}")
else:
    SECRET_KEY = env.text("SECRET_KEY") or _dev_secret_key()
    ALLOWED_HOSTS = env.csv("ALLOWED_HOSTS", "localhost,127.0.0.1")
    if ENV == "test":
        ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]

# --- trading configuration -------------------------------------------------------------------

VENUE = env.choice("VENUE", VENUES, "paper")
BINANCE_API_KEY = env.text("BINANCE_API_KEY")
BINANCE_API_SECRET = env.text("BINANCE_API_SECRET")
if VENUE == "binance":
    env.required("BINANCE_API_KEY", "when VENUE=binance")
    env.required("BINANCE_API_SECRET", "when VENUE=binance")
BINANCE_TESTNET = env.flag("BINANCE_TESTNET")
BINANCE_FUTURES_URL = env.url("BINANCE_FUTURES_URL", ("http", "https"))
BINANCE_HTTP_TIMEOUT = float(env.positive_decimal("BINANCE_HTTP_TIMEOUT", "10"))
if BINANCE_HTTP_TIMEOUT > 300:
    raise ConfigError(
        "BINANCE_HTTP_TIMEOUT", f"must be at most 300 seconds, got {BINANCE_HTTP_TIMEOUT}"
    )

SYMBOLS = [symbol.upper() for symbol in env.csv("SYMBOLS", "BTCUSDT,ETHUSDT")]
if not SYMBOLS:
    raise ConfigError("SYMBOLS", "must name at least one symbol, e.g. BTCUSDT,ETHUSDT")
for _symbol in SYMBOLS:
    if not re.fullmatch(r"[A-Z0-9]{2,30}", _symbol):
        raise ConfigError("SYMBOLS", f"{_symbol!r} is not a futures symbol such as BTCUSDT")

EXECUTOR_INTERVAL_SECONDS = env.positive_int("EXECUTOR_INTERVAL_SECONDS", 5)
MODEL_DIR = BASE_DIR / env.text("MODEL_DIR", "var/models")

FIRESTORE_PROJECT = env.text("FIRESTORE_PROJECT")
FIRESTORE_EMULATOR_HOST = env.text("FIRESTORE_EMULATOR_HOST")
if FIRESTORE_EMULATOR_HOST and not re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", FIRESTORE_EMULATOR_HOST):
    raise ConfigError("FIRESTORE_EMULATOR_HOST", "must be host:port, e.g. 127.0.0.1:8080")

ALERT_WEBHOOK_URL = env.url("ALERT_WEBHOOK_URL", ("http", "https"))
ALERT_SLACK_WEBHOOK_URL = env.url("ALERT_SLACK_WEBHOOK_URL", ("http", "https"))
ALERT_TELEGRAM_BOT_TOKEN = env.text("ALERT_TELEGRAM_BOT_TOKEN")
ALERT_TELEGRAM_CHAT_ID = env.text("ALERT_TELEGRAM_CHAT_ID")
ALERT_TELEGRAM_API_URL = env.url(
    "ALERT_TELEGRAM_API_URL", ("http", "https"), "https://api.telegram.org"
)
METRICS_TOKEN = env.text("METRICS_TOKEN")

# --- Django ----------------------------------------------------------------------------------

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "simple_history",
    "tradingsite",
    "doctor",
    "routing",
    "risk",
    "mlinsights",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "tradingsite.urls"
ASGI_APPLICATION = "tradingsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tradingsite.context_processors.trading",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    config = env.database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Web, worker and beat write at once: WAL lets readers run beside the writer, the busy
        # timeout waits for the lock instead of failing, and IMMEDIATE takes the write lock at
        # BEGIN so two transactions never deadlock upgrading a read lock.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # A file (not :memory:) so the Celery worker and ASGI server a test starts share it
        # (they are given its path), one per test run so two runs never share one.
        config["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
    else:
        # A connection per request and per task (Django's default), not persistent ones:
        # under ASGI each request may run on a thread of its own, and connections kept per
        # thread ran the server out of connections under load (the API load benchmark).
        config["CONN_MAX_AGE"] = 0
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if ENV == "test":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The charting library comes from the npm registry (package.json); never copied by hand.
STATICFILES_DIRS = [("vendor/echarts", BASE_DIR / "node_modules" / "echarts" / "dist")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if ENV in {"dev", "test"}
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = ENV in {"dev", "test"}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

# --- Redis: broker, results, channel layer, cache, locks --------------------------------------

REDIS_URL = env.url(
    "REDIS_URL", ("redis", "rediss", "unix"), f"unix://{VAR_DIR / 'embedded-redis.sock'}"
)
# Every key this deployment writes starts with this prefix, so tests (ENV=test) never touch
# keys of a running stack on the same server, and clean up only their own.
REDIS_KEY_PREFIX = f"tradingsite-{ENV}"


def _celery_redis_url(url: str) -> str:
    # Kombu and Celery's result backend name a unix socket "redis+socket://" where redis-py,
    # Django's cache and channels-redis say "unix://".
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"redis+socket://{parts.path}"
    return url


CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX,
        "TIMEOUT": 300,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times a socket out after 5 s, as long as channels-redis blocks
            # waiting for a message: a quiet socket's wait could time out and close the page's
            # websocket (the 500-client benchmark saw it). Longer than that wait, still bounded.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
            "prefix": f"{REDIS_KEY_PREFIX}:asgi",
            "capacity": 200,
            "expiry": 30,
        },
    }
}

# --- Celery (SPEC §2) ------------------------------------------------------------------------

CELERY_BROKER_URL = _celery_redis_url(REDIS_URL)
CELERY_RESULT_BACKEND = _celery_redis_url(REDIS_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
    # Longer than the longest task (training: 1 h hard limit), so an acks_late message is
    # never redelivered while its first run is still working.
    "visibility_timeout": 2 * 3600,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:"}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "routing.tasks.executor_*": {"queue": "executor"},
    "routing.tasks.replay_task": {"queue": "ml"},
    "mlinsights.tasks.*": {"queue": "ml"},
}
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
# Acknowledge on receipt by default; short idempotent tasks opt into acks_late themselves.
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "tradingsite.beat:HeartbeatScheduler"
CELERY_TASK_ALWAYS_EAGER = False

# --- API -------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: a request without credentials (or with a bad token) gets 401 with
    # "WWW-Authenticate: Token"; the dashboard's own requests use the session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tradingsite.api_policy.RolePermission"],
    "EXCEPTION_HANDLER": "tradingsite.api_policy.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"anon": "30/minute", "user": "600/minute"},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "tradingsite API",
    "DESCRIPTION": "Read and steer the trading account: state, orders, risk, models, health.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets named apart when their field names collide ("status" is everywhere).
    "ENUM_NAME_OVERRIDES": {"ReplayStatusEnum": "routing.models.ReplayRun.Status"},
}

# --- production hardening (checked by `manage.py check --deploy --fail-level WARNING`) ---------

if IS_PROD:
    SECURE_SSL_REDIRECT = True
    # Load balancers probe over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
