"""Settings shared by every deployment, read from the environment.

Embedded default (nothing set): SQLite, a file cache, the in-memory channel layer and Celery tasks
run in-process. Set ``DATABASE_URL`` and ``REDIS_URL`` to scale out: PostgreSQL, Redis as cache,
channel layer and Celery broker.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env, env_bool, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Every file the service writes lives under this folder.
DATA_DIR = Path(env("CROWDSEG_DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env("DJANGO_SECRET_KEY") or ""
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "crowdseg.api.csrf_failure"  # JSON under /api/, Django's page elsewhere

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.headless",
    "channels",
    "accounts",
    "annotations",
    "gamification",
    "inference",
    "synthesis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads a body: refuses oversized ones under /api/ in the API's error format.
    "crowdseg.api.ApiRequestLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "crowdseg.urls"
ASGI_APPLICATION = "crowdseg.asgi.application"
WSGI_APPLICATION = None

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

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (server, import command) share the file: wait for locks, don't fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
elif env_int("DATABASE_POOL_SIZE", 16) > 0 and not DATABASES["default"]["CONN_MAX_AGE"]:
    # Under ASGI every request runs its sync view in a fresh thread, which would open (and close) a
    # PostgreSQL connection per request; a shared pool makes that a checkout.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_int("DATABASE_POOL_SIZE", 16),
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL") or ""
CHANNEL_LAYER_READ_TIMEOUT_S = 30  # well above channels-redis's 5 s blocking pop

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # One pool per process (see crowdseg.cache), large enough for every request thread.
            "OPTIONS": {
                "pool_class": "crowdseg.cache.ProcessConnectionPool",
                "max_connections": env_int("REDIS_MAX_CONNECTIONS", 1000),
            },
        }
    }
    # redis-py caps a pool at 100 connections, and every socket's join borrows one: a burst of
    # players opening the app would get "Too many connections". Its default read timeout (5 s)
    # equals the layer's blocking pop (BZPOPMIN, 5 s): on a busy server the empty answer arrives
    # a moment late, the read times out and the socket waiting on the layer is closed.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": env_int("REDIS_MAX_CONNECTIONS", 1000),
                        "socket_timeout": CHANNEL_LAYER_READ_TIMEOUT_S,
                    }
                ]
            },
        }
    }
    # Every app request looks its session token up: from Redis, falling back to the database.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    # A file cache is shared by every process on this machine, so allauth's rate limits hold
    # across server workers even without Redis.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: Redis (or any broker URL) when configured; otherwise tasks run in-process.
CELERY_BROKER_URL = env("CELERY_BROKER_URL") or REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND") or REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL == "memory://"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True  # a killed worker's task goes back to the queue
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE = {
    # Rounds whose time ran out settle here; finished rounds settle at once.
    "rounds-settle-expired": {"task": "gamification.tasks.rounds_settle_expired", "schedule": 60.0},
    # Synthesis and validation jobs whose worker died resume from their last checkpoint.
    "jobs-resume-stale": {"task": "synthesis.tasks.jobs_resume_stale", "schedule": 120.0},
    # Export files whose download link expired are removed.
    "exports-expire": {"task": "annotations.tasks.exports_expire", "schedule": 3600.0},
    # Pupils' data past their class's retention period is erased (ICO Age Appropriate Design Code).
    "classrooms-enforce-retention": {"task": "gamification.tasks.classrooms_enforce_retention", "schedule": 3600.0},
}

# The game's task choice (gamification.services.rank_by_need's signature); active sampling plugs in here.
GAME_TASK_RANKER = "gamification.services.rank_by_need"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# allauth, headless: app clients send X-Session-Token, browsers use the session cookie.
HEADLESS_ONLY = True
HEADLESS_CLIENTS = ("app", "browser")
HEADLESS_SERVE_SPECIFICATION = True
HEADLESS_FRONTEND_URLS = {
    "account_confirm_email": "/account/verify-email/{key}",
    "account_reset_password": "/account/password/reset",
    "account_reset_password_from_key": "/account/password/reset/key/{key}",
    "account_signup": "/account/signup",
}
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*"]  # e-mail optional: pupils have none
ACCOUNT_EMAIL_VERIFICATION = "optional"
# allauth's default rate limits (e.g. 5 failed logins per account per 5 minutes) count in the
# default cache, which is shared by every process (Redis, or the file cache without it).
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "allauth.headless.contrib.rest_framework.authentication.XSessionTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "crowdseg.api.CappedPagination",
    "DEFAULT_SCHEMA_CLASS": "crowdseg.schema.AutoSchema",
    "EXCEPTION_HANDLER": "crowdseg.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "crowdseg.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "guest": "10/hour",
        "class_join": env("CROWDSEG_CLASS_JOIN_RATE") or "120/hour",  # per address: a class joins from one
        "import": "60/hour",
        "suggest": env("CROWDSEG_SUGGEST_RATE") or "600/min",
        "rounds": env("CROWDSEG_ROUND_RATE") or "120/hour",
        "submit": env("CROWDSEG_SUBMIT_RATE") or "120/min",
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "crowdseg API",
    "DESCRIPTION": "Citizen-science medical image segmentation. Accounts live under /_allauth/ "
    "(django-allauth headless, its own OpenAPI spec at /_allauth/openapi.html).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "GET_LIB_DOC_EXCLUDES": "crowdseg.schema.lib_doc_excludes",
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# The web client (/play/): its modules, and onnxruntime-web's wasm build that scripts/bootstrap
# copies out of client/node_modules (absent without npm: the client then decodes on the server).
STATICFILES_DIRS = [("client", BASE_DIR / "client" / "src")]
if (BASE_DIR / "client" / "vendor" / "ort").is_dir():
    STATICFILES_DIRS.append(("client/ort", BASE_DIR / "client" / "vendor" / "ort"))
MEDIA_URL = "/media/"
MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    # What volunteers' phones load (display renditions).
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # What no client ever loads directly: model inputs, embeddings, exported models.
    "private": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "private"), "base_url": None},
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Uploads: files stream to disk past 2.5 MB; a request may carry at most this many bytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
CROWDSEG_MAX_UPLOAD_BYTES = env_int("CROWDSEG_MAX_UPLOAD_BYTES", 512 * 1024 * 1024)
FILE_UPLOAD_TEMP_DIR = None
# Keep the uploaded original (private storage) next to the de-identified image; off by default.
CROWDSEG_KEEP_ORIGINALS = env_bool("CROWDSEG_KEEP_ORIGINALS", False)
# Display images through Django's authorising view (crowdseg.media): only to those who may see
# them. Off: a deployment serves them otherwise (object storage with its own signed URLs).
CROWDSEG_SERVE_MEDIA = env_bool("CROWDSEG_SERVE_MEDIA", True)
# Who sends the bytes once the view said yes: "" Django, "x-accel-redirect" nginx (from the
# internal location below, aliased to MEDIA_ROOT), "x-sendfile" Apache or lighttpd.
CROWDSEG_MEDIA_SENDFILE = env("CROWDSEG_MEDIA_SENDFILE") or ""
if CROWDSEG_MEDIA_SENDFILE not in ("", "x-accel-redirect", "x-sendfile"):
    raise ImproperlyConfigured(f"unknown CROWDSEG_MEDIA_SENDFILE {CROWDSEG_MEDIA_SENDFILE!r}")
CROWDSEG_MEDIA_INTERNAL_URL = env("CROWDSEG_MEDIA_INTERNAL_URL") or "/internal-media/"

# MedSAM: where export_medsam writes the ONNX model the server uses; embeddings are computed
# when images are imported (a Celery task) unless switched off.
CROWDSEG_MODEL_DIR = Path(env("CROWDSEG_MODEL_DIR") or DATA_DIR / "models" / "litemedsam")
CROWDSEG_EMBED_ON_IMPORT = env_bool("CROWDSEG_EMBED_ON_IMPORT", True)
CROWDSEG_ONNX_THREADS = env_int("CROWDSEG_ONNX_THREADS", 0)  # 0: onnxruntime's choice
# Images whose decoder context (about 20 MB each) a server process keeps in memory.
CROWDSEG_DECODER_CONTEXT_CACHE = env_int("CROWDSEG_DECODER_CONTEXT_CACHE", 32)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL") or "INFO"},
}
HEADLESS_ADAPTER = "accounts.adapter.HeadlessAdapter"


def _client_isolation_headers(headers, path, url):
    """The web client's files carry the page's ``Cross-Origin-Embedder-Policy`` (``crowdseg.play``):
    a Web Worker is cross-origin isolated, and may run onnxruntime-web on threads, only if its own
    script says so too."""
    if url.startswith("/static/client/"):
        headers["Cross-Origin-Embedder-Policy"] = "require-corp"


WHITENOISE_ADD_HEADERS_FUNCTION = _client_isolation_headers
