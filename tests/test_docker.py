"""docker-compose.yml and the Dockerfile, checked without an engine: the structure is valid, every
variable is set, the server talks to the compose MongoDB, and its command is one `lm-saes` accepts."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lm_saes.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_volumes_and_ports():
    spec = compose()
    assert set(spec["services"]) == {"mongo", "server"}
    named = set(spec["volumes"])
    for service in spec["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("${", "/", ".")) or source in named, f"undeclared volume {source}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port} would expose an unauthenticated service"
    mongo, server = spec["services"]["mongo"], spec["services"]["server"]
    assert mongo["image"].startswith("mongo:") and "healthcheck" in mongo
    assert server["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert server["environment"]["MONGO_URI"] == "mongodb://mongo:27017"  # the service name, the default port
    assert server["build"] == "." and (ROOT / "Dockerfile").is_file()


def test_every_variable_is_required_or_defaulted():
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{([^}]*)\}", text)
    assert uses, "the project mount uses ${PWD}"
    for use in uses:
        assert re.fullmatch(r"PWD(:\?.+)?", use), f"${{{use}}} is neither PWD nor given a default/error"


def test_the_server_command_is_a_valid_lm_saes_serve():
    spec = compose()
    command = spec["services"]["server"]["command"]
    assert command[0] == "lm-saes"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    container_port = int(spec["services"]["server"]["ports"][0].split(":")[-1])
    assert container_port == args.port
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '"lm-saes", "serve", "--host", "0.0.0.0", "--port", "8000"' in dockerfile
    for source in re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which the repository lacks"
