"""The production files: compose wires every service to files that exist, keeps secrets out, and the
image runs as a non-root user with a health check. (No Docker engine runs on the build machines.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())


def test_compose_runs_the_whole_stack() -> None:
    assert set(COMPOSE["services"]) == {
        "postgres",
        "asterisk",
        "dialer",
        "coturn",
        "prometheus",
        "grafana",
    }


def test_every_build_context_and_mounted_folder_exists() -> None:
    base = ROOT / "deploy"
    for name, service in COMPOSE["services"].items():
        build = service.get("build")
        if build:
            assert (base / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (base / source).exists(), f"{name}: {source}"


def test_secrets_come_from_the_environment_file_never_from_the_repository() -> None:
    text = (ROOT / "deploy" / "docker-compose.yml").read_text()
    for key in (
        "POSTGRES_PASSWORD",
        "DIALER_AMI_SECRET",
        "GF_SECURITY_ADMIN_PASSWORD",
        "TURN_SECRET",
        "DIALER_SOFTPHONE_TURN_SECRET",
    ):
        for line in text.splitlines():
            if line.strip().startswith(key + ":"):
                assert re.search(r"\$\{[A-Z_]+:\?", line), line
    assert ".env" in (ROOT / ".gitignore").read_text()


def test_the_dialer_reaches_postgres_and_asterisk_by_service_name() -> None:
    env = COMPOSE["services"]["dialer"]["environment"]
    assert "@postgres:5432/" in env["DIALER_DATABASE_URL"]
    assert "@asterisk:5038" in env["DIALER_AMI_SERVERS"]


def test_prometheus_scrapes_the_dialer_service() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    assert "dialer:8080" in targets


def test_the_image_runs_as_a_non_root_user_with_a_health_check() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert dockerfile.count("FROM ") >= 2, "multi-stage"
    assert "DIALER_HTTP_HOST=0.0.0.0" in dockerfile
