"""Django settings, read from the environment through ``spotify_agent.env``.

Two switches decide the backing services:

* no ``DATABASE_URL`` and no ``REDIS_URL`` — the embedded default: SQLite, the
  in-memory channel layer, a local-memory cache and eager Celery (``make run``);
* with them set — PostgreSQL through psycopg 3, the Redis channel layer, a Redis
  cache and a Redis Celery broker.

Nothing else differs between the two. Every variable is documented in README.md
and ``.env.example``; docs/operations.md explains the production values.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from .env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

# --- Core -------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Development only: a fixed, obviously insecure key so sessions survive restarts.
    SECRET_KEY = "django-insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # daphne first so that `runserver` serves ASGI (HTTP and WebSocket).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "django_prometheus",
    "axes",
    # Project apps.
    "accounts",
    "audit",
    "realtime",
    "chat",
    "playlists",
    "listening",
    "notifications",
    "monitoring",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "monitoring.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it answers locked-out logins.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "spotify_agent.urls"
ASGI_APPLICATION = "spotify_agent.asgi.application"
WSGI_APPLICATION = "spotify_agent.wsgi.application"

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
            ],
        },
    },
]

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # Axes first: it refuses locked-out credentials before they are checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Backing services: the two switches --------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")

if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            # Persistent connections do not survive ASGI's per-request threads;
            # connections are pooled by PgBouncer or DATABASE_POOL instead.
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
            conn_health_checks=True,
            engine="django_prometheus.db.backends.postgresql",
        )
    }
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"]["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5)
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django_prometheus.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            # WAL lets the daphne threads read while one of them writes.
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"},
            # A file, not memory, so a daphne or Celery process started by a test sees the same data.
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
        }
    }

# redis-py caps a pool's connections and raises when it is exhausted; its socket
# timeout must also exceed channels_redis's blocking receive (5 s) or idle
# consumers fail. Both are set deliberately here (docs/operations.md).
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 1000, minimum=10)
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 15.0)
REDIS_CONNECT_TIMEOUT = env_float("REDIS_CONNECT_TIMEOUT", 5.0)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": REDIS_MAX_CONNECTIONS,
                        "socket_timeout": REDIS_SOCKET_TIMEOUT,
                        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                        "health_check_interval": 30,
                    }
                ],
                "prefix": env_str("CHANNEL_LAYER_PREFIX", "asgi"),
                "capacity": env_int("CHANNEL_LAYER_CAPACITY", 1000, minimum=100),
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }
    CACHES = {
        "default": {
            # Django's own client: django_prometheus's Redis backends import django-redis.
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "sa"),
            "OPTIONS": {
                "max_connections": REDIS_MAX_CONNECTIONS,
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache",
            "LOCATION": "spotify-agent",
        }
    }

# --- Celery (read by spotify_agent/celery.py with namespace="CELERY") ---------

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=1)
# With acks_late, a task that is not acked within the visibility timeout is
# redelivered. No countdown/ETA may exceed it; longer delays go through beat.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    # Priority steps so a CRITICAL notification overtakes a digest in one queue.
    "queue_order_strategy": "priority",
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"socket_timeout": REDIS_SOCKET_TIMEOUT}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("notifications", Exchange("notifications"), routing_key="notifications"),
    # CRITICAL notifications (RoutingRule.queue): never behind a backlog of others.
    Queue("notifications_critical", Exchange("notifications_critical"), routing_key="notifications_critical"),
    Queue("compliance", Exchange("compliance"), routing_key="compliance"),
)
CELERY_TASK_ROUTES = {
    "notifications.*": {"queue": "notifications"},
    "compliance.*": {"queue": "compliance"},
}
CELERY_BEAT_SCHEDULE = {
    "accounts-flush-expired-tokens": {
        "task": "accounts.tasks.token_flush_expired",
        "schedule": timedelta(hours=6),
    },
    "accounts-purge-stale-login-attempts": {
        "task": "accounts.tasks.login_attempts_purge",
        "schedule": timedelta(hours=1),
    },
    "audit-anchor-chain-heads": {
        "task": "audit.tasks.audit_anchor_heads",
        "schedule": timedelta(minutes=5),
    },
    "chat-purge-unattached-attachments": {
        "task": "chat.tasks.attachments_purge_unattached",
        "schedule": timedelta(hours=1),
    },
    "playlists-prune-history": {
        "task": "playlists.tasks.playlist_history_prune",
        "schedule": timedelta(hours=6),
    },
    "playlists-rebuild-suggestions": {
        "task": "playlists.tasks.suggestions_rebuild_all",
        "schedule": timedelta(hours=6),
    },
    # Re-dispatches deliveries whose publish was lost or whose worker died (outbox relay).
    "notifications-relay-deliveries": {
        "task": "notifications.tasks.deliveries_relay",
        "schedule": timedelta(minutes=1),
    },
    # Digest windows close on the minute at the finest.
    "notifications-send-due-digests": {
        "task": "notifications.tasks.digests_send_due",
        "schedule": timedelta(minutes=1),
    },
}

# --- REST API ----------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TenantJWTAuthentication",
        "accounts.authentication.ApiClientAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "spotify_agent.api.pagination.DefaultCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "spotify_agent.api.throttling.PrincipalRateThrottle",
        "spotify_agent.api.throttling.AnonymousRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("THROTTLE_RATE_USER", "600/min"),
        "api_client": env_str("THROTTLE_RATE_API_CLIENT", "3000/min"),
        "anon": env_str("THROTTLE_RATE_ANON", "60/min"),
        "auth": env_str("THROTTLE_RATE_AUTH", "30/min"),
    },
    "EXCEPTION_HANDLER": "spotify_agent.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "NUM_PROXIES": env_int("NUM_PROXIES", 0, minimum=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Spotify Agent API",
    "DESCRIPTION": (
        "Partner and client REST API. Authenticate with a JWT (`Authorization: Bearer`) "
        "or an API client key (`Authorization: Api-Key <key>`). Errors always have the shape "
        '`{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "ApiKeyAuth": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "`Api-Key <key>` as issued to an API client.",
            }
        }
    },
}

JWT_ISSUER = env_str("JWT_ISSUER", "spotify-agent")
JWT_AUDIENCE = env_str("JWT_AUDIENCE", "spotify-agent-api")
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_ACCESS_LIFETIME", 300, minimum=10)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_REFRESH_LIFETIME", 86400, minimum=60)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    # Pinned: the verifier accepts exactly this algorithm (no "none", no RS/HS confusion).
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY") or SECRET_KEY,
    "AUDIENCE": JWT_AUDIENCE,
    "ISSUER": JWT_ISSUER,
    "LEEWAY": 0,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "CHECK_USER_IS_ACTIVE": True,
    "TOKEN_OBTAIN_SERIALIZER": "accounts.api.serializers.TokenObtainInputSerializer",
}

# --- Authentication hardening (django-axes) ---------------------------------

AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1))
# Lock a username tried from anywhere, and an IP trying many usernames.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.services.auth.login_lockout_response"
AXES_VERBOSE = False
AXES_ENABLE_ACCESS_FAILURE_LOG = False
# Client IP behind a reverse proxy: the N-th address from the right of
# X-Forwarded-For, where N = NUM_PROXIES (0 = trust only the socket peer). The
# same function serves REST throttles, audit and WebSocket, so all agree.
AXES_CLIENT_IP_CALLABLE = "accounts.services.network.client_ip"

# --- Real-time hub ------------------------------------------------------------

MAX_WS_CONNECTIONS_PER_USER = env_int("MAX_WS_CONNECTIONS_PER_USER", 5, minimum=1)
WS_HEARTBEAT_INTERVAL = env_int("WS_HEARTBEAT_INTERVAL", 30, minimum=1)
WS_AUTH_TIMEOUT = env_float("WS_AUTH_TIMEOUT", 5.0)
WS_TICKET_TTL = env_int("WS_TICKET_TTL", 30, minimum=1)
# How often an open socket re-checks that its user is still active and unbanned.
WS_AUTH_RECHECK_INTERVAL = env_float("WS_AUTH_RECHECK_INTERVAL", 5.0)
# Seconds a socket's connect/disconnect audit events wait to be written with
# the others of the process, in one transaction (realtime.auditing).
WS_AUDIT_FLUSH_INTERVAL = env_float("WS_AUDIT_FLUSH_INTERVAL", 0.25)
WS_MAX_FRAME_BYTES = env_int("WS_MAX_FRAME_BYTES", 65536, minimum=1024)
WS_ALLOWED_ORIGINS = env_list(
    "WS_ALLOWED_ORIGINS",
    ["http://localhost:8000", "http://127.0.0.1:8000"] if DEBUG else [],
)
# A socket's entry in the per-user connection registry lives this long unless
# refreshed (every third of it), so a crashed process's slots free themselves.
WS_CONNECTION_TTL = env_int("WS_CONNECTION_TTL", 60, minimum=3)
# Frames waiting for one client beyond this close its socket (4413): a client
# that does not read must not grow the server's memory.
WS_MAX_OUTBOUND_BACKLOG = env_int("WS_MAX_OUTBOUND_BACKLOG", 1000, minimum=10)
# Under daphne, bytes held for one client that the kernel has not taken (it
# stopped reading and its socket buffers are full) beyond this close it (4413).
WS_MAX_OUTBOUND_BYTES = env_int("WS_MAX_OUTBOUND_BYTES", 1024 * 1024, minimum=64 * 1024)
# Token buckets per message family, (tokens per second, burst): per socket and
# per user across all of the user's sockets. Families not listed use "default".
WS_RATE_LIMITS = {
    "default": (env_float("WS_RATE_LIMIT_RATE", 10.0), env_int("WS_RATE_LIMIT_BURST", 30, minimum=1)),
    "auth": (0.1, 3),
    "ping": (2.0, 10),
}
WS_USER_RATE_LIMITS = {
    "default": (env_float("WS_USER_RATE_LIMIT_RATE", 30.0), env_int("WS_USER_RATE_LIMIT_BURST", 90, minimum=1)),
    "auth": (0.5, 10),
    # None: no shared bucket. A user's pings are bounded by the per-socket
    # bucket times MAX_WS_CONNECTIONS_PER_USER; a Redis round trip per
    # heartbeat of every socket would buy nothing.
    "ping": None,
}
# This many refused frames in a row within the window close the socket (4430).
WS_RATE_LIMIT_CLOSE_AFTER = env_int("WS_RATE_LIMIT_CLOSE_AFTER", 50, minimum=2)
WS_RATE_LIMIT_CLOSE_WINDOW = env_float("WS_RATE_LIMIT_CLOSE_WINDOW", 10.0)
MESSAGE_BATCH_SIZE = env_int("MESSAGE_BATCH_SIZE", 100, minimum=1)
NOTIFICATION_QUEUE_SIZE = env_int("NOTIFICATION_QUEUE_SIZE", 10000, minimum=1)
# Room fan-out over Redis pub/sub (realtime.fanout). Pub/sub channels are global
# to a Redis server, not per database, so deployments sharing one Redis need
# distinct prefixes. A publish is best effort and runs after the commit in the
# request's thread: its timeout bounds how long a stalled Redis delays a reply.
FANOUT_CHANNEL_PREFIX = env_str("FANOUT_CHANNEL_PREFIX", "fanout")
FANOUT_PUBLISH_TIMEOUT = env_float("FANOUT_PUBLISH_TIMEOUT", 1.0)
# Presence (realtime.presence): a connection counts as live for this long after
# its last heartbeat (2.5 client ping intervals, so one late ping is tolerated);
# a server that dies takes its users offline within this time.
PRESENCE_TTL_SECONDS = env_int("PRESENCE_TTL_SECONDS", WS_HEARTBEAT_INTERVAL * 5 // 2, minimum=1)
# An "offline" is decided this long after the last socket closed, so a page
# reload or a network switch does not flap the user's presence.
PRESENCE_GRACE_SECONDS = env_float("PRESENCE_GRACE_SECONDS", 5.0)

# --- Chat moderation (chat.moderation, docs/api.md "Moderation") -------------------

# The moderators every new message passes through, in order: a reject stops the
# pipeline and nothing is stored; a flag stores the message for review.
CHAT_MODERATORS = env_list(
    "CHAT_MODERATORS",
    [
        "chat.moderation.FloodModerator",
        "chat.moderation.RepeatModerator",
        "chat.moderation.BlockedWordsModerator",
    ],
)
# Flooding: more than this many messages from one user in one room within the
# window are rejected (a human typing fast stays well under 10 in 10 seconds).
CHAT_FLOOD_MAX_MESSAGES = env_int("CHAT_FLOOD_MAX_MESSAGES", 10, minimum=1)
CHAT_FLOOD_WINDOW_SECONDS = env_int("CHAT_FLOOD_WINDOW_SECONDS", 10, minimum=1)
# Repetition: the same text (case and spacing ignored) more than this many
# times from one user in one room within the window is rejected.
CHAT_REPEAT_MAX_MESSAGES = env_int("CHAT_REPEAT_MAX_MESSAGES", 3, minimum=1)
CHAT_REPEAT_WINDOW_SECONDS = env_int("CHAT_REPEAT_WINDOW_SECONDS", 60, minimum=1)

# --- Chat attachments and encryption at rest (docs/operations.md) ---------------------

# Largest attachment accepted, in bytes: larger uploads answer 413 too_large.
CHAT_ATTACHMENT_MAX_BYTES = env_int("CHAT_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024, minimum=1)
# Media types accepted, as sniffed from the file's first bytes (chat.sniffing).
# No SVG or HTML: browsers run scripts from both.
CHAT_ATTACHMENT_ALLOWED_TYPES = env_list(
    "CHAT_ATTACHMENT_ALLOWED_TYPES",
    [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "audio/flac",
        "audio/mp4",
        "application/pdf",
        "text/plain",
    ],
)
# Keys of encrypted rooms, "<id>:<Fernet key>", newest first: new writes use the
# first, reads accept any. Empty (the embedded default): encrypted rooms are
# refused. Rotation: docs/operations.md, "Encryption at rest".
CHAT_ENCRYPTION_KEYS = env_list("CHAT_ENCRYPTION_KEYS", [])
# HMAC key of the word index that keeps encrypted rooms searchable; separate
# from the encryption keys, which rotate without touching the index.
CHAT_SEARCH_INDEX_KEY = env_str("CHAT_SEARCH_INDEX_KEY") or SECRET_KEY

# --- Playlists (playlists.services, docs/protocol.md "Playlists") ----------------------

# Items one playlist may hold: every edit loads and rewrites the order of the
# items it shifts, so this bounds an edit's cost (streaming services cap near 10,000).
PLAYLIST_MAX_ITEMS = env_int("PLAYLIST_MAX_ITEMS", 5000, minimum=1)
# Operations in one batch op (applied atomically, all or none).
PLAYLIST_MAX_BATCH_OPS = env_int("PLAYLIST_MAX_BATCH_OPS", 100, minimum=1)
# An op is transformed across at most this many ops committed after its base
# revision; a client further behind gets resync_required with a fresh snapshot
# (reloading is cheaper than transforming a stale edit across a day of changes).
PLAYLIST_TRANSFORM_WINDOW = env_int("PLAYLIST_TRANSFORM_WINDOW", 500, minimum=1)
# A snapshot every this many revisions bounds "as of revision N" to replaying
# fewer ops than this (written by a Celery task after the commit).
PLAYLIST_SNAPSHOT_EVERY = env_int("PLAYLIST_SNAPSHOT_EVERY", 100, minimum=1)
# Op-log entries older than this are pruned (down to the newest snapshot before
# the cutoff); revisions before it are no longer viewable or revertible.
PLAYLIST_HISTORY_RETENTION_DAYS = env_int("PLAYLIST_HISTORY_RETENTION_DAYS", 365, minimum=1)
# A share link expires after this many days unless its creator sets a sooner time.
PLAYLIST_SHARE_LINK_MAX_DAYS = env_int("PLAYLIST_SHARE_LINK_MAX_DAYS", 30, minimum=1)
# Tracks in one catalog import request (REST, idempotent on URI).
TRACK_IMPORT_MAX_TRACKS = env_int("TRACK_IMPORT_MAX_TRACKS", 1000, minimum=1)
# Suggestions (playlists.suggestions): neighbours kept per track by the rebuild,
# and at most how many suggestions one request returns.
SUGGESTION_NEIGHBOURS = env_int("SUGGESTION_NEIGHBOURS", 50, minimum=1)
SUGGESTION_MAX_RESULTS = env_int("SUGGESTION_MAX_RESULTS", 50, minimum=1)
# Plays of one user less than this apart form one listening session: tracks in
# one session co-occur like tracks of one playlist.
SUGGESTION_SESSION_GAP_MINUTES = env_int("SUGGESTION_SESSION_GAP_MINUTES", 30, minimum=1)

# --- Listening sessions (listening.services, docs/protocol.md "Listening sessions") -----

# Members one session admits at once (the host included); past it, joins are
# refused with conflict. Playback frames are one per command, so the bound is
# the chat room and presence, not playback.
LISTENING_AUDIENCE_LIMIT = env_int("LISTENING_AUDIENCE_LIMIT", 10000, minimum=2)
# A start (play, skip, the next track) waits at most this long (ms) for members
# whose player reports it is buffering, then goes on without them. 5 s lets a
# phone on a weak mobile link fetch the few seconds of audio a player needs to
# start (a couple of seconds at 96 kbps on 3G), and is about as long as a room
# waits in silence before it feels broken. A buffering report older than this
# holds no start (a crashed player must not stall every track).
LISTENING_START_WAIT_MS = env_int("LISTENING_START_WAIT_MS", 5000, minimum=100)

# --- Notifications (notifications, docs/api.md "Notifications", docs/operations.md) ---

# Delivery (notifications.services.delivery). A retryable failure waits a random
# time between 1 s and min(MAX, BASE * 2**(attempt-1)) ("full jitter": retries of
# many deliveries that failed together spread out instead of hitting the
# recovering service at once), or the provider's Retry-After when longer.
# 8 attempts at base 30 s and cap 1 h span up to about 2 hours, long enough to
# ride out a provider's incident; then the delivery is dead-lettered.
NOTIFICATION_RETRY_BASE_SECONDS = env_float("NOTIFICATION_RETRY_BASE_SECONDS", 30.0)
NOTIFICATION_RETRY_MAX_SECONDS = env_float("NOTIFICATION_RETRY_MAX_SECONDS", 3600.0)
NOTIFICATION_MAX_ATTEMPTS = env_int("NOTIFICATION_MAX_ATTEMPTS", 8, minimum=1)
# The relay (beat, every minute) re-dispatches a queued delivery this long past
# its due time: the after-commit publish of a process that died, or a task lost
# by the broker. Two minutes leave a busy queue time to reach it first.
NOTIFICATION_RELAY_GRACE_SECONDS = env_int("NOTIFICATION_RELAY_GRACE_SECONDS", 120, minimum=10)
# A delivery "sending" for longer than this lost its worker mid-call: the relay
# sends it again (it may have gone out: at-least-once, docs/operations.md).
# Well above the slowest provider call (timeouts of 10 s per socket operation).
NOTIFICATION_SENDING_TIMEOUT_SECONDS = env_int("NOTIFICATION_SENDING_TIMEOUT_SECONDS", 300, minimum=10)

# Email (notifications.providers.email): Django's backends. Without DEBUG the
# SMTP backend; the embedded default prints messages to the console.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Seconds per socket operation: a stalled SMTP server must not hold a worker.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "notifications@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# SMS (notifications.providers.sms): Twilio's Messages API shape. No account
# SID: the SMS channel is off (nobody is reachable on it).
SMS_API_BASE_URL = env_str("SMS_API_BASE_URL", "https://api.twilio.com")
SMS_ACCOUNT_SID = env_str("SMS_ACCOUNT_SID", "")
SMS_AUTH_TOKEN = env_str("SMS_AUTH_TOKEN", "")
SMS_FROM = env_str("SMS_FROM", "")
SMS_MESSAGING_SERVICE_SID = env_str("SMS_MESSAGING_SERVICE_SID", "")
# Seconds per socket operation (connect, each read) of one request.
SMS_TIMEOUT = env_float("SMS_TIMEOUT", 10.0)

# Push providers (notifications.providers.webpush and .mobile; docs/operations.md
# "Push providers"). A service whose credentials are unset answers a permanent
# "not configured" error for its targets.
# Seconds per socket operation of one push request (and of FCM's token request):
# push services answer in well under a second, and a stalled one must not hold a worker.
PUSH_HTTP_TIMEOUT = env_float("PUSH_HTTP_TIMEOUT", 10.0)
# Web Push: the VAPID private key (base64url raw or DER, PEM text, or a PEM file's
# path; `manage.py webpush_vapid_keys` makes one) and the contact push services
# may use (mailto: or https:).
WEBPUSH_VAPID_PRIVATE_KEY = env_str("WEBPUSH_VAPID_PRIVATE_KEY", "")
WEBPUSH_VAPID_SUBJECT = env_str("WEBPUSH_VAPID_SUBJECT", "")
# FCM HTTP v1: the Firebase project and its service account's JSON key file.
FCM_BASE_URL = env_str("FCM_BASE_URL", "https://fcm.googleapis.com")
FCM_PROJECT_ID = env_str("FCM_PROJECT_ID", "")
FCM_SERVICE_ACCOUNT_FILE = env_str("FCM_SERVICE_ACCOUNT_FILE", "")
# APNs over HTTP/2 with a token (.p8) key. Sandbox: https://api.sandbox.push.apple.com.
# APNS_CA_FILE: a CA bundle to verify the server with instead of the system's.
APNS_BASE_URL = env_str("APNS_BASE_URL", "https://api.push.apple.com")
APNS_KEY_FILE = env_str("APNS_KEY_FILE", "")
APNS_KEY_ID = env_str("APNS_KEY_ID", "")
APNS_TEAM_ID = env_str("APNS_TEAM_ID", "")
APNS_TOPIC = env_str("APNS_TOPIC", "")
APNS_CA_FILE = env_str("APNS_CA_FILE", "")

# --- Audit ----------------------------------------------------------------------

# Key of the audit chain's HMAC. Distinct from SECRET_KEY in production so that
# rotating one does not invalidate the other (docs/operations.md).
AUDIT_HMAC_KEY = env_str("AUDIT_HMAC_KEY") or SECRET_KEY

# --- Operations -----------------------------------------------------------------

METRICS_TOKEN = env_str("METRICS_TOKEN", "")
PROMETHEUS_EXPORT_MIGRATIONS = False
READYZ_TIMEOUT = env_float("READYZ_TIMEOUT", 2.0)
SENTRY_DSN = env_str("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "development" if DEBUG else "production")
SENTRY_TRACES_SAMPLE_RATE = env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0)
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "monitoring.logging.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["request_id"],
        },
        "channel_layer_drops": {"class": "monitoring.metrics.ChannelLayerDropCounter"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # channels_redis logs dropped messages at INFO; keep them visible and count them.
        "channels_redis": {"level": "INFO", "handlers": ["channel_layer_drops"]},
        "daphne": {"level": "WARNING"},
    },
}

# --- Security (production) ------------------------------------------------------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Health checks and metrics are scraped over plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1024)

if SENTRY_DSN:
    from monitoring.sentry import sentry_init

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)
