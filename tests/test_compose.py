"""infra/docker-compose.yml is safe by default: every published port is bound to 127.0.0.1 and
every password comes from the environment with no default (`${VAR:?message}`, so compose
refuses to start without it). Parsed with PyYAML; `docker compose config` is run where present."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "infra" / "docker-compose.yml"
SECRET = re.compile(r"PASSWORD|SECRET|AUTH_STRING|TOKEN", re.I)
VARIABLE = re.compile(r"\$\{(\w+)([^}]*)\}")


def _published(service: dict) -> list[str]:
    out = []
    for p in service.get("ports", []):
        out.append(f"{p.get('host_ip', '')}:{p.get('published', '')}:{p.get('target')}" if isinstance(p, dict) else str(p))
    return out


def test_every_published_port_is_bound_to_loopback() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    ports = {name: _published(s) for name, s in services.items() if s.get("ports")}
    assert ports, "the stack publishes the Prefect and MLflow UIs"
    for name, published in ports.items():
        for p in published:
            assert p.startswith("127.0.0.1:"), f"{name}: port {p!r} is published on every interface"
    assert not [n for n, s in services.items() if s.get("network_mode") == "host"]  # host networking binds all


def test_no_password_has_a_default() -> None:
    text = COMPOSE.read_text()
    secrets = [(name, rest) for name, rest in VARIABLE.findall(text) if SECRET.search(name)]
    assert secrets, "the database password comes from the environment"
    for name, rest in secrets:  # ${VAR:?message} only: no ${VAR}, ${VAR:-default}, ${VAR-default}
        assert rest.startswith(":?") and len(rest) > 2, f"${{{name}{rest}}} does not stop compose when unset"
    services = yaml.safe_load(text)["services"]
    for name, s in services.items():
        env = s.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.partition("=")[::2] for e in env)
        for key, value in items:
            if SECRET.search(key):
                assert VARIABLE.fullmatch(str(value)), f"{name}: {key} is a literal, not from the environment"
    for url in re.findall(r"\w+(?:\+\w+)?://[^\s\"']+", text):  # no password written into a connection URL
        creds = url.split("://", 1)[1].rpartition("@")[0]
        if ":" in creds:
            assert VARIABLE.fullmatch(creds.split(":", 1)[1]), f"{url}: a literal password"


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker not installed")
def test_docker_compose_refuses_to_start_without_the_password(tmp_path) -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("docker compose not available")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    unset = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config"], env=env, capture_output=True,
                           text=True, check=False)
    assert unset.returncode != 0 and "POSTGRES_PASSWORD" in unset.stderr
    ok = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config"], env={**env, "POSTGRES_PASSWORD": "x1"},
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
