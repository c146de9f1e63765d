# The two commands: `make run` (embedded default on 127.0.0.1:8000) and `make test`.
# Everything else here is a step those two take, or a convenience.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_PASSWORD ?= demo-pass-2026

# The suite runs against the real PostgreSQL and Redis: DATABASE_URL and
# REDIS_URL when set, else this machine's services (a database and a Redis db
# of its own). Override with TEST_DATABASE_URL / TEST_REDIS_URL; setting both
# empty runs it on the embedded default, where the Redis-only tests skip.
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/spotify_agent)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/9)

# Test runs use production settings (DEBUG off, collected static files) minus
# TLS redirects, with a throwaway key.
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	DEBUG=0 SECRET_KEY=test-only-secret-key-not-for-production-0123456789abcdef-0123456789abcdef \
	ALLOWED_HOSTS=127.0.0.1,localhost,testserver SECURE_SSL_REDIRECT=0 CACHE_KEY_PREFIX=test \
	CHANNEL_LAYER_PREFIX=test-asgi FANOUT_CHANNEL_PREFIX=test-fanout LOG_LEVEL=WARNING WS_ALLOWED_ORIGINS=http://127.0.0.1:8000,https://app.example.com

.PHONY: run test install migrate seed demo lint format worker beat flower clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	DEBUG=1 $(PY) manage.py migrate --noinput

seed: migrate
	DEBUG=1 $(PY) manage.py seed_demo --password $(DEMO_PASSWORD) --base-url http://$(HOST):$(PORT)

# seed_demo prints the URLs of the admin, API docs and WebSocket and the credentials.
run: seed
	DEBUG=1 $(PY) manage.py runserver $(HOST):$(PORT)

# With `make run` going in another terminal: a DJ session for two listeners,
# their positions measured against the server's (realtime/client/demo.py).
demo: install
	$(PY) -m realtime.client dj-demo --url http://$(HOST):$(PORT) --password $(DEMO_PASSWORD)

test: install
	$(TEST_ENV) $(PY) manage.py collectstatic --noinput --verbosity 0
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

worker: install
	$(PY) -m celery -A spotify_agent worker -Q notifications_critical,default,notifications,compliance -l INFO

beat: install
	$(PY) -m celery -A spotify_agent beat -l INFO --schedule var/celerybeat-schedule

flower: install
	$(PY) -m celery -A spotify_agent flower --port=5555

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
