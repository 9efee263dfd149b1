"""Settings of the small Django project used by tests/test_apps.py.

No database: nothing here needs one (CSRF uses its cookie, not sessions).
"""

SECRET_KEY = "capataz-tests-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "djproject.urls"
WSGI_APPLICATION = "djproject.wsgi.application"
DATABASES = {}
TEMPLATES = []
USE_TZ = True
# Uploads above this go to a temporary file (Django's default is 2.5 MiB);
# set explicitly so the 5 MiB upload test is about spooling for sure.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2621440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2621440
LOGGING_CONFIG = None
