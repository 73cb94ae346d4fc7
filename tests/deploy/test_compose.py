"""The container deployment files (issue 7): Docker cannot run here, so their shape is checked,
and `docker compose config` validates the compose file wherever the client has the plugin."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

#: The migration job's command (tests/deploy/test_two_replicas.py runs the same two steps).
MIGRATE = "vigil db upgrade && vigil db grant vigil_app --password-env POSTGRES_APP_PASSWORD"
SECRETS = {"POSTGRES_PASSWORD": "pw", "POSTGRES_APP_PASSWORD": "app-pw", "VIGIL_CLIENT_ID_SALT": "salt", "VIGIL_API_KEY_PEPPER": "pepper"}


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_topology(compose: dict[str, dict[str, dict[str, object]]]) -> None:
    s = compose["services"]
    assert set(s) == {"postgres", "migrate", "api", "proxy"}
    assert s["migrate"]["command"] == ["sh", "-c", MIGRATE] and s["migrate"]["restart"] == "no"
    # The schema's owner migrates; the replicas connect as the role it granted (no delete, no drop).
    assert s["migrate"]["environment"]["VIGIL_DATABASE_URL"].startswith("postgresql+psycopg://vigil:")  # type: ignore[index]
    assert s["api"]["environment"]["VIGIL_DATABASE_URL"].startswith("postgresql+psycopg://vigil_app:")  # type: ignore[index]
    assert s["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert s["api"]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert s["api"]["deploy"] == {"replicas": "${VIGIL_REPLICAS:-2}", "resources": {"limits": {"memory": "${VIGIL_API_MEMORY_LIMIT:-3g}"}}}
    for name, service in s.items():  # every container's log is rotated (json-file grows without end)
        assert service["logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}, name
    assert "ports" not in s["api"]  # only the proxy is published
    env = s["api"]["environment"]
    assert env["VIGIL_DATABASE_URL"].startswith("postgresql+psycopg://")  # type: ignore[index,union-attr]
    assert env["VIGIL_ENVIRONMENT"] == "production" and "--migrate" not in str(s["api"].get("command", ""))  # type: ignore[index]
    mount = s["proxy"]["volumes"][0].split(":")  # type: ignore[index]
    assert (REPO / mount[0]).is_file() and mount[1] == "/etc/nginx/conf.d/default.conf"


def test_proxy_balances_over_the_api_service() -> None:
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    assert re.search(r"upstream vigil_api \{[^}]*server api:8000 resolve", conf)
    assert "proxy_pass http://vigil_api;" in conf
    # The replicas trust this header (FORWARDED_ALLOW_IPS): nginx must set it, not append to the
    # client's own, or a client picks its client id and steps around the rate limit.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf and "$proxy_add_x_forwarded_for" not in conf
    # Its access log carries the id the service logged the request under (a row to look up).
    fmt = re.search(r"log_format vigil (.*?);", conf, flags=re.DOTALL)
    assert fmt and "$upstream_http_x_vigil_request_id" in fmt.group(1) and "access_log /var/log/nginx/access.log vigil;" in conf


def test_every_vigil_variable_in_compose_is_a_setting_and_access_control_reaches_the_api(
    compose: dict[str, dict[str, dict[str, object]]],
) -> None:
    from service.db.spool import RESCUE_WAIT_S
    from service.settings import Settings

    env = compose["services"]["api"]["environment"]
    names = {k for k in env if k.startswith("VIGIL_")}  # type: ignore[union-attr]
    assert {k.removeprefix("VIGIL_").lower() for k in names} <= set(Settings.model_fields), names
    assert {"VIGIL_REQUIRE_API_KEY", "VIGIL_API_KEYS", "VIGIL_RATE_LIMIT_PER_S", "VIGIL_RATE_LIMIT_BURST"} <= names
    grace = str(compose["services"]["api"]["stop_grace_period"])
    settings = Settings()
    budget = settings.shutdown_timeout_s + settings.log_drain_timeout_s + RESCUE_WAIT_S
    assert grace.endswith("s") and float(grace[:-1]) > budget
    assert "spool:/data" in compose["services"]["api"]["volumes"]  # type: ignore[operator]  # the spool outlives the container


def test_dockerfile_cpu_torch_non_root_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)  # its probe: tests/deploy/test_healthprobe.py
    assert 'CMD ["python", "-m", "service.healthprobe"]' in text.split("HEALTHCHECK", 1)[1].split("\n\n", 1)[0]
    assert 'CMD ["vigil", "serve"]' in text
    for path in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
        assert (REPO / path).exists(), path


def _compose_cli() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _compose_cli(), reason="the docker compose plugin is not installed here")
def test_docker_compose_config_validates() -> None:
    env = {**os.environ, **SECRETS, "VIGIL_REPLICAS": "3"}
    out = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert '"replicas": 3' in out.stdout


def test_the_image_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    """The Dockerfile's own commands, run here: what its `pip install` is given holds every
    runtime dependency but torch (from the CPU index), none of the test extra, at the lock's pins."""
    text = (REPO / "Dockerfile").read_text()
    run = re.search(r"^RUN pip install --index-url .*?(?=\n\n)", text, re.MULTILINE | re.DOTALL)
    assert run is not None
    steps = [s.strip() for s in run.group(0).replace("\\\n", " ").removeprefix("RUN ").split("&&")]
    shutil.copy(REPO / "requirements.lock", tmp_path)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    for step in steps:
        if "pip install" not in step and not step.startswith("rm "):
            line = step.replace("/tmp/", f"{tmp_path}/").replace("python -c", f"{sys.executable} -c")
            subprocess.run(line, shell=True, check=True, cwd=tmp_path)  # the Dockerfile's own line
    assert "pip install -r /tmp/runtime.txt -c /tmp/constraints.txt" in steps
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = (tmp_path / "runtime.txt").read_text().split()
    assert set(runtime) == {d for d in project["dependencies"] if not d.startswith(("torch==", "torchvision=="))}
    assert not set(runtime) & set(project["optional-dependencies"]["test"])
    pins = (tmp_path / "constraints.txt").read_text()
    assert re.search(r"^fastapi==", pins, re.MULTILINE) and not re.search(r"^(torch|nvidia-\S+)==", pins, re.MULTILINE)
