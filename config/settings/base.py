"""Every setting, read from the environment; the defaults run a laptop demo with nothing installed.

`production.py` and `test.py` override what differs. The embedded defaults are SQLite for the
database and kombu's SQLAlchemy transport over a SQLite file for the Celery broker.
"""

from datetime import timedelta
from pathlib import Path

import environ
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(BASE_DIR / ".env", overwrite=False)

# Run-time files of the embedded set-up: SQLite database, broker, built models.
VAR_DIR = Path(env.str("PARLEY_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Development key: production.py refuses to start without SECRET_KEY from the environment.
SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "annotations",
    "labelling",
    "exports",
    "trainer_bridge",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A database that goes away mid-request answers 503 with Retry-After, not 500.
    "config.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A signed-out htmx or fetch request answers 401 instead of the redirect to the login page.
    "config.middleware.SignInRequiredMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
    # Content-Security-Policy and Permissions-Policy when settings name them (production does).
    "config.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'parley.sqlite3'}"),
}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# A persistent connection is checked before a request reuses it: after a database restart the
# first request of each web process reconnects instead of failing.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker share the file: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username+IP before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login lockout (django-axes): this many failed logins for one username from one IP lock that
# pair out for the cool-off; a successful login resets the count. API tokens are not affected.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve static files straight from the source folders in development (no collectstatic needed).
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie.
X_FRAME_OPTIONS = "DENY"
# Header values of config.middleware.SecurityHeadersMiddleware; empty sends no header.
# production.py sets both.
CONTENT_SECURITY_POLICY = env.str("CONTENT_SECURITY_POLICY", default="")
PERMISSIONS_POLICY = env.str("PERMISSIONS_POLICY", default="")

# The API throttles count requests in this cache. The default (local memory) counts per
# process; production should point CACHE_URL at a cache every process shares
# (e.g. redis://host:6379/1) so that a limit holds across processes and machines.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    # ISO 8601; with TIME_ZONE UTC that ends in Z, as annotations.timestamps.iso_utc writes the
    # bodies built by hand.
    "DATETIME_FORMAT": "iso-8601",
    # Requests per user (by token or session) and per IP for anonymous callers.
    "DEFAULT_THROTTLE_CLASSES": [
        # DRF's anon and user limits, letting requests through while the cache is unreachable.
        "config.throttles.AnonThrottle",
        "config.throttles.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="2000/min"),
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Parley API",
    "DESCRIPTION": "Human-feedback data for chat assistants: projects, tasks, generations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    # Parley's own favicon is linked by templates/drf_spectacular/swagger_ui.html.
    "SWAGGER_UI_FAVICON_HREF": "",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Names for the choice sets several components share a field name with ("state").
    "ENUM_NAME_OVERRIDES": {
        "TrainingRunStateEnum": "trainer_bridge.models.TrainingRun.State",
        "RewardEvaluationStateEnum": "trainer_bridge.models.RewardEvaluation.State",
        "MembershipRoleEnum": "annotations.models.Membership.Role",
    },
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default=f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("gpu", Exchange("gpu"), routing_key="gpu"),
    Queue("train", Exchange("train"), routing_key="train"),
]
# Generation runs on GPU workers, training runs on the training backend's workers; the rest
# (exports, metrics, lease reaping) on the default queue.
CELERY_TASK_ROUTES = {
    "trainer_bridge.tasks.generate*": {"queue": "gpu"},
    "trainer_bridge.tasks.train*": {"queue": "train"},
}
# A worker that dies mid-task leaves the message on the broker for another worker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # An unacknowledged message returns to the queue after this long (a worker died holding it).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
        # A broker that cannot be reached fails a send within seconds instead of hanging the
        # request that sends (the work stays queued in the database; the watchdogs send it).
        "socket_connect_timeout": 3,
    }
CELERY_BEAT_SCHEDULE = {
    "expire-task-leases": {
        "task": "labelling.tasks.expire_task_leases",
        "schedule": env.float("PARLEY_LEASE_REAP_SECONDS", default=60.0),
    },
    "requeue-stuck-generations": {
        "task": "trainer_bridge.tasks.requeue_stuck_generations",
        "schedule": env.float("PARLEY_GENERATION_REAP_SECONDS", default=60.0),
    },
    # Sets whose candidates are in become ranking tasks; a run a busy worker missed expires
    # rather than piling up behind the next one.
    "assemble-ranking-sets": {
        "task": "labelling.tasks.assemble_ranking_sets",
        "schedule": env.float("PARLEY_COMPARISON_ASSEMBLE_SECONDS", default=10.0),
        "options": {"expires": env.float("PARLEY_COMPARISON_ASSEMBLE_SECONDS", default=10.0)},
    },
    "requeue-stuck-exports": {
        "task": "exports.tasks.requeue_stuck_exports",
        "schedule": env.float("PARLEY_EXPORT_REAP_SECONDS", default=60.0),
    },
    "requeue-stuck-training-runs": {
        "task": "trainer_bridge.tasks.requeue_stuck_training_runs",
        "schedule": env.float("PARLEY_TRAINING_REAP_SECONDS", default=60.0),
    },
    "top-up-comparisons": {
        "task": "labelling.tasks.top_up_comparisons",
        "schedule": env.float("PARLEY_COMPARISON_TOP_UP_SECONDS", default=60.0),
        "options": {"expires": env.float("PARLEY_COMPARISON_TOP_UP_SECONDS", default=60.0)},
    },
    # The dashboards' rollups: figures are at most this many seconds (plus one run) stale.
    "refresh-dashboards": {
        "task": "labelling.dashboards.tasks.refresh_dashboards",
        "schedule": env.float("PARLEY_DASHBOARD_REFRESH_SECONDS", default=60.0),
        "options": {"expires": env.float("PARLEY_DASHBOARD_REFRESH_SECONDS", default=60.0)},
    },
}
# Task modules outside `<app>.tasks`, which autodiscovery does not find.
CELERY_IMPORTS = ("labelling.dashboards.tasks",)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Parley ---------------------------------------------------------------------------------
PARLEY = {
    # Where built or downloaded models live when a ModelVersion names a relative path.
    "MODEL_DIR": Path(env.str("PARLEY_MODEL_DIR", default=str(VAR_DIR / "models"))),
    # torch device for generation workers: "cpu", "cuda", "cuda:0", ...
    "GENERATION_DEVICE": env.str("PARLEY_GENERATION_DEVICE", default="cpu"),
    "TASK_LEASE_SECONDS": env.int("PARLEY_TASK_LEASE_SECONDS", default=30 * 60),
    # Largest prompt or message-tree file an import accepts (browser and import_prompts).
    "IMPORT_MAX_BYTES": env.int("PARLEY_IMPORT_MAX_BYTES", default=100 * 1024 * 1024),
    "GENERATION": {
        # Upper bound on max_new_tokens any request may ask for.
        "MAX_NEW_TOKENS": env.int("PARLEY_GENERATION_MAX_NEW_TOKENS", default=1024),
        # A batch claims requests whose n * (prompt + max_new_tokens) add up to at most this,
        # and at most MAX_BATCH_REQUESTS of them. 0: on the CPU 32768 tokens and 64 requests;
        # on CUDA what the model's KV cache holds (sized from free memory, see MEMORY_FRACTION).
        "TOKEN_BUDGET": env.int("PARLEY_GENERATION_TOKEN_BUDGET", default=0),
        "MAX_BATCH_REQUESTS": env.int("PARLEY_GENERATION_MAX_BATCH_REQUESTS", default=0),
        # Rows decoded at once. 0: on the CPU 1024; on CUDA as many as the KV cache holds at
        # 64 tokens a row, up to 4096.
        "MAX_ROWS": env.int("PARLEY_GENERATION_MAX_ROWS", default=0),
        # CUDA: the share of the memory free after loading that a worker's models may take for
        # their KV caches and decoding (split evenly between MAX_LOADED_MODELS).
        "MEMORY_FRACTION": env.float("PARLEY_GENERATION_MEMORY_FRACTION", default=0.85),
        # CUDA: replay decoding steps from CUDA graphs (captured once per worker and length).
        "CUDA_GRAPHS": env.bool("PARLEY_GENERATION_CUDA_GRAPHS", default=True),
        # How a decoding step attends: "sdpa" (PyTorch's fused kernel) or "matmul" (batched
        # products); the generation benchmark's floor section times both on the device.
        "STEP_ATTENTION": env.str("PARLEY_GENERATION_STEP_ATTENTION", default="sdpa"),
        # How often a running batch looks for queued requests of its model to join it; a
        # negative value turns joining off.
        "JOIN_POLL_SECONDS": env.float("PARLEY_GENERATION_JOIN_POLL_SECONDS", default=0.05),
        # A request running longer than this is taken to have lost its worker and is requeued.
        "RUNNING_TIMEOUT_SECONDS": env.int("PARLEY_GENERATION_TIMEOUT_SECONDS", default=600),
        "MAX_ATTEMPTS": env.int("PARLEY_GENERATION_MAX_ATTEMPTS", default=3),
        # Requests queued this long while the broker's gpu queue is empty lost their message
        # (a broker restart without persistence, a send while it was down): the watchdog sends
        # them again.
        "QUEUED_RESEND_SECONDS": env.int("PARLEY_GENERATION_RESEND_SECONDS", default=120),
        # Models one worker process keeps loaded (least recently used evicted).
        "MAX_LOADED_MODELS": env.int("PARLEY_MAX_LOADED_MODELS", default=2),
        # Models a worker serving the gpu queue loads and warms up (KV cache, CUDA graphs) as
        # it starts, not on its first request: "" none, "recent" the most requested of the last
        # week, or model version ids "12,15" (see trainer_bridge.preload).
        "PRELOAD": env.str("PARLEY_GENERATION_PRELOAD", default=""),
        # How long a preloading worker process may take to start before Celery gives up on it.
        "PRELOAD_TIMEOUT_SECONDS": env.float(
            "PARLEY_GENERATION_PRELOAD_TIMEOUT_SECONDS", default=900.0
        ),
        # Top-p sorts only this many most likely tokens of each row (sorting the whole vocabulary
        # costs more than the model's forward pass); a row whose nucleus or top_k reaches past
        # them falls back to the full sort, so results stay exact.
        "TOP_P_CANDIDATES": env.int("PARLEY_GENERATION_TOP_P_CANDIDATES", default=256),
        # torch intra-op threads in a worker process, set when it loads its first model; 0 keeps
        # torch's default (one per core). Fewer threads hold up better when other processes
        # compete for the cores.
        "TORCH_THREADS": env.int("PARLEY_TORCH_THREADS", default=0),
        # Fault injection for tests and drills, e.g. {"oom_above_rows": 4, "sleep_seconds": 5}.
        "FAULTS": env.json("PARLEY_GENERATION_FAULTS", default={}),
    },
    # Key of the pseudonyms that stand for annotators in exports (a keyed hash per project);
    # empty derives one from SECRET_KEY. Changing it changes every pseudonym.
    "PSEUDONYM_KEY": env.str("PARLEY_PSEUDONYM_KEY", default=""),
    "EXPORTS": {
        # A running export with no progress for this long has lost its worker: it is queued
        # again, and failed with the reason after MAX_ATTEMPTS.
        "STALE_SECONDS": env.int("PARLEY_EXPORT_STALE_SECONDS", default=120),
        "MAX_ATTEMPTS": env.int("PARLEY_EXPORT_MAX_ATTEMPTS", default=3),
        # Exports queued this long while the broker's default queue is empty lost their
        # message: the watchdog sends them again.
        "QUEUED_RESEND_SECONDS": env.int("PARLEY_EXPORT_RESEND_SECONDS", default=120),
    },
    "TRAINING": {
        # Backend of a run that names none: "local" (accelerate launch on a train worker) or
        # "command" (COMMAND_TEMPLATE, e.g. sbatch or kubectl; see deploy/training/).
        "DEFAULT_BACKEND": env.str("PARLEY_TRAINING_BACKEND", default="local"),
        # accelerate config of the local backend: one CPU, one GPU, several GPUs, DeepSpeed.
        "ACCELERATE_CONFIG": env.str(
            "PARLEY_TRAINING_ACCELERATE_CONFIG",
            default=str(BASE_DIR / "deploy" / "accelerate" / "cpu.yaml"),
        ),
        # OpenMP threads of each local training process (OMP_NUM_THREADS); 0 leaves it to
        # accelerate (one per physical core). On a machine other work shares, 1 avoids threads
        # spinning against each other.
        "CPU_THREADS": env.int("PARLEY_TRAINING_CPU_THREADS", default=0),
        # Where runs keep their inputs, events, logs and outputs while they run; the command
        # backend's jobs must reach it at the same path (a shared disk on a cluster).
        "WORK_DIR": Path(env.str("PARLEY_TRAINING_WORK_DIR", default=str(VAR_DIR / "training"))),
        # The command backend: a shell command with {run_id} {stage} {train_path}
        # {validation_path} {base_path} {reward_model_path} {output_dir} {hyperparameters_json}
        # {events_path} {report_url} {work_dir} (each shell-quoted); the job gets the run's
        # token in PARLEY_RUN_TOKEN and reports to {report_url}.
        "COMMAND_TEMPLATE": env.str("PARLEY_TRAINING_COMMAND", default=""),
        # Run when a command-backend run is cancelled, with {run_id} and {external_id} (what
        # the submit command printed), e.g. `scancel {external_id}`; empty runs nothing.
        "CANCEL_COMMAND_TEMPLATE": env.str("PARLEY_TRAINING_CANCEL_COMMAND", default=""),
        # Base URL of this site as a job sees it: report URLs are built on it.
        "REPORT_BASE_URL": env.str("PARLEY_TRAINING_REPORT_BASE_URL", default=""),
        # A local run whose worker shows no sign of life for this long has lost it: it is queued
        # again, and failed with its log tail after MAX_ATTEMPTS.
        "STALE_SECONDS": env.int("PARLEY_TRAINING_STALE_SECONDS", default=120),
        "MAX_ATTEMPTS": env.int("PARLEY_TRAINING_MAX_ATTEMPTS", default=2),
        # A command-backend job that reports nothing for this long (queue waits included) is
        # failed: nobody can tell whether it still runs.
        "COMMAND_STALE_SECONDS": env.int("PARLEY_TRAINING_COMMAND_STALE_SECONDS", default=6 * 3600),
        # Runs queued this long while the train queue is empty lost their message: sent again.
        "QUEUED_RESEND_SECONDS": env.int("PARLEY_TRAINING_RESEND_SECONDS", default=120),
        # Characters of log kept on the run (the page and the API show them).
        "LOG_TAIL_CHARS": env.int("PARLEY_TRAINING_LOG_TAIL_CHARS", default=20000),
    },
    "COMPARISONS": {
        # A ranking set draws at most this many times K samples (its first round plus
        # re-samples for exact duplicates) before it is cancelled as short of K distinct replies.
        "MAX_SAMPLES_PER_CANDIDATE": env.int("PARLEY_COMPARISON_SAMPLE_BUDGET", default=3),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # axes announces itself on every start (each management command): only its warnings.
        "axes": {"level": "WARNING"},
    },
}
