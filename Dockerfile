# The one image behind every process of docker-compose.yml: web (daphne),
# migrate, worker, beat and flower differ only in their command.
FROM python:3.11-slim

ARG GIT_SHA=unknown
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var \
    STATIC_ROOT=/app/static \
    GIT_SHA=${GIT_SHA}

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=app:app . .

# Static files are collected at build time with a throwaway key: settings
# refuse to load without SECRET_KEY when DEBUG is off, and collectstatic uses
# no secret. The real key comes from the environment at run time.
RUN SECRET_KEY=build-only-collectstatic-key DEBUG=0 python manage.py collectstatic --noinput \
    && mkdir -p /app/var/media \
    && chown -R app:app /app/var /app/static

USER app

EXPOSE 8000

# --proxy-headers: trust X-Forwarded-For/-Proto from the load balancer in front
# (settings: SECURE_PROXY_SSL_HEADER, NUM_PROXIES).
CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", "--proxy-headers", "spotify_agent.asgi:application"]
