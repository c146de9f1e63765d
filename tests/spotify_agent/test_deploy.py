"""Production settings and deployment files: ``check --deploy`` passes, a missing
SECRET_KEY is refused, and .env.example, docker-compose.yml and prometheus.yml
agree with what the code reads and runs."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import IN_CI, ROOT

SETTINGS = ROOT / "spotify_agent" / "settings.py"
ENV_READ = re.compile(r"""\benv_(?:str|int|bool|float|list|required)\(\s*["']([A-Z][A-Z0-9_]*)["']""")
ENV_EXAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def production_env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing inherited but PATH and the service URLs."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    for name in ("DATABASE_URL", "REDIS_URL", "VAR_DIR"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_reports_nothing_with_production_settings():
    env = production_env(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="api.example.com")

    proc = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout
    assert "WARNING" not in proc.stdout + proc.stderr


def test_settings_refuse_to_load_without_secret_key_when_debug_is_off():
    proc = manage("check", env=production_env(DEBUG="0", ALLOWED_HOSTS="api.example.com"))

    assert proc.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off." in proc.stderr


def test_env_example_documents_every_variable_settings_reads():
    read = set(ENV_READ.findall(SETTINGS.read_text()))
    documented = set(ENV_EXAMPLE_LINE.findall((ROOT / ".env.example").read_text()))

    assert len(read) > 30  # the pattern still matches how settings.py reads the environment
    assert read - documented == set()


def test_operations_doc_documents_every_variable_settings_reads():
    read = set(ENV_READ.findall(SETTINGS.read_text()))
    doc = (ROOT / "docs" / "operations.md").read_text()

    assert {name for name in read if f"`{name}`" not in doc} == set()


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_process_on_healthy_dependencies():
    compose = load_compose()
    services = compose["services"]

    assert set(services) >= {"postgres", "redis", "migrate", "web", "worker", "beat", "flower", "prometheus"}
    for name in ("postgres", "redis", "web", "worker", "beat", "flower", "prometheus"):
        assert "healthcheck" in services[name], name
    for name in ("migrate", "web", "worker", "beat", "flower"):
        assert services[name]["environment"] is compose["x-common-env"], name
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"][-3:] == ["manage.py", "migrate", "--noinput"]
    assert "--proxy-headers" in services["web"]["command"]
    assert services["worker"]["command"][services["worker"]["command"].index("--queues") + 1] == (
        "notifications_critical,default,notifications,compliance"
    )
    env = compose["x-common-env"]
    assert env["DEBUG"] == "0"
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379/")


def test_compose_configures_only_variables_settings_reads():
    read = set(ENV_READ.findall(SETTINGS.read_text()))

    assert set(load_compose()["x-common-env"]) - read == set()


def test_dockerfile_builds_a_non_root_daphne_image():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    assert "pip install -r requirements.txt" in dockerfile
    assert re.search(r"SECRET_KEY=\S+ DEBUG=0 python manage.py collectstatic --noinput", dockerfile)
    assert re.search(r"^USER app$", dockerfile, re.MULTILINE)
    assert '"daphne"' in dockerfile and '"--proxy-headers"' in dockerfile


def test_prometheus_scrapes_web_with_the_token_and_flower():
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    web = jobs["web"]
    assert web["metrics_path"] == "/metrics"
    assert web["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_token"}
    assert web["dns_sd_configs"][0]["names"] == ["web"] and web["dns_sd_configs"][0]["port"] == 8000
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    compose = load_compose()
    assert compose["secrets"]["metrics_token"] == {"file": "${METRICS_TOKEN_FILE:-./secrets/metrics_token}"}
    assert "metrics_token" in compose["services"]["prometheus"]["secrets"]


@pytest.mark.skipif(shutil.which("promtool") is None and not IN_CI, reason="promtool is not installed")
def test_promtool_accepts_the_prometheus_config(tmp_path):
    # promtool insists that credentials files exist; point it at a local one.
    token = tmp_path / "metrics_token"
    token.write_text("token\n")
    config = tmp_path / "prometheus.yml"
    source = (ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text()
    config.write_text(source.replace("/run/secrets/metrics_token", str(token)))
    # Its rule files are found next to it.
    (tmp_path / "alerts.yml").write_text((ROOT / "monitoring" / "prometheus" / "alerts.yml").read_text())

    proc = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("promtool") is None and not IN_CI, reason="promtool is not installed")
def test_alert_rules_pass_their_promtool_tests():
    proc = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        cwd=ROOT / "monitoring" / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_mounts_the_alert_rules_prometheus_loads():
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    volumes = load_compose()["services"]["prometheus"]["volumes"]

    for name in config["rule_files"]:
        assert f"./monitoring/prometheus/{name}:/etc/prometheus/{name}:ro" in volumes


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) where installed, else Debian's `docker-compose`."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(
    compose_command() is None and not IN_CI, reason="neither docker compose nor docker-compose is installed"
)
def test_docker_compose_accepts_the_file():
    env = dict(os.environ, SECRET_KEY="x" * 50, POSTGRES_PASSWORD="compose-config-check")
    proc = subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
