"""The embedded default: one machine, no services, a demo that works on first run."""

from .base import *  # noqa: F403
from .base import SECRET_KEY, env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
# Only for the local demo; production.py refuses to start without a real key.
SECRET_KEY = SECRET_KEY or "local-demo-only-not-secret-3b1f0c1e8f6d4a55b2d0e6b1c7a9f4e2"
