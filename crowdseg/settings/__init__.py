"""Settings modules: ``base`` (shared, from the environment), ``local`` (the embedded default),
``production`` (a deployment) and ``test``. ``DJANGO_SETTINGS_MODULE`` picks one."""
