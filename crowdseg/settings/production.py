"""A deployment: every secret from the environment, HTTPS everywhere, no media through Django.

Required: DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE), DJANGO_ALLOWED_HOSTS, DATABASE_URL,
REDIS_URL. See README "Deploying".
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DATABASES, REDIS_URL, SECRET_KEY, env_bool, env_int

DEBUG = False
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must hold at least 50 characters")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and not env_bool("CROWDSEG_ALLOW_SQLITE"):
    raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL database in production")
if not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set in production (cache, channel layer, Celery broker)")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
CROWDSEG_SERVE_MEDIA = env_bool("CROWDSEG_SERVE_MEDIA", False)
