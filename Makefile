# The two commands: `make run` (embedded default on 127.0.0.1:8000) and `make test`.
# Everything else here is a step those two take, or a convenience.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_PASSWORD ?= demo-pass-2026

# Test runs use production settings (DEBUG off) minus TLS redirects, with a
# throwaway key; DATABASE_URL / REDIS_URL pass through from the caller (.ci/run
# sets them to the machine's PostgreSQL and Redis).
TEST_ENV := DEBUG=0 SECRET_KEY=test-only-secret-key-not-for-production-0123456789abcdef \
	ALLOWED_HOSTS=127.0.0.1,localhost,testserver SECURE_SSL_REDIRECT=0 CACHE_KEY_PREFIX=test \
	CHANNEL_LAYER_PREFIX=test-asgi LOG_LEVEL=WARNING WS_ALLOWED_ORIGINS=http://127.0.0.1:8000,https://app.example.com

.PHONY: run test install migrate seed lint format worker beat flower clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	DEBUG=1 $(PY) manage.py migrate --noinput

seed: migrate
	DEBUG=1 $(PY) manage.py seed_demo --password $(DEMO_PASSWORD)

run: seed
	@echo ""
	@echo "  Admin:      http://$(HOST):$(PORT)/admin/   (user admin)"
	@echo "  API docs:   http://$(HOST):$(PORT)/api/docs/"
	@echo "  Readiness:  http://$(HOST):$(PORT)/readyz"
	@echo "  WebSocket:  ws://$(HOST):$(PORT)/ws/"
	@echo "  Password of every demo user: $(DEMO_PASSWORD)"
	@echo ""
	DEBUG=1 $(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

worker: install
	$(PY) -m celery -A spotify_agent worker -Q default,notifications,compliance -l INFO

beat: install
	$(PY) -m celery -A spotify_agent beat -l INFO --schedule var/celerybeat-schedule

flower: install
	$(PY) -m celery -A spotify_agent flower --port=5555

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
