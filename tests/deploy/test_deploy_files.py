"""deploy/: the Dockerfile, the compose file, the systemd units and the Kubernetes manifests say
only what the programs accept.

No image is built and nothing is started here (no container registry is reachable); what is
checked instead: every YAML parses; every owm command line in these files passes the real click
parsers (tests/command_lines.py); every ``OWM_<SECTION>__<KEY>`` names a setting of the program
that reads it and its value reads as the key's type (the project's own loader); the probes and
health checks name paths the coordinator serves, on the port it is told to listen on;
``systemd-analyze verify`` accepts the units.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from owm_adapters.bootstrap import config_sources
from owm_adapters.bootstrap.settings import (
    CoordinatorSettings,
    NodeSettings,
    load_coordinator_settings,
    load_node_settings,
)
from tests.command_lines import check, program_of, shell_commands
from tests.server.http.test_health import Setup, setup  # noqa: F401 - the coordinator fixture

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "kubernetes"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _compose() -> dict[str, Any]:
    return _documents(COMPOSE)[0]


def _interpolate(value: object) -> str:
    """A compose value as the container sees it: ``${VAR:-default}`` → default, ``$$`` → ``$``."""
    text = str(value)
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", text).replace("$$", "$")


def _argv_lines(command: list[str] | str) -> Iterator[list[str]]:
    """The owm command lines of a compose/Kubernetes ``command`` (exec form or ``sh -c``)."""
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if words[:2] == ["sh", "-c"]:
        yield from shell_commands(_interpolate(words[2]))
    elif program_of(words):
        yield words


def _k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in _documents(path)]


def _k8s(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in _k8s_objects() if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod() -> dict[str, Any]:
    return _k8s("Deployment", "owm-coordinator")["spec"]["template"]["spec"]


def _dockerfile_commands() -> Iterator[list[str]]:
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        instruction, _, rest = line.partition(" ")
        if instruction in {"CMD", "ENTRYPOINT"}:
            yield yaml.safe_load(rest)  # the exec form is a JSON array


def _unit(path: Path) -> dict[str, list[str]]:
    """``Key`` → values of a unit file (active lines only)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def _all_command_lines() -> list[tuple[str, list[str]]]:
    found = [("Dockerfile", argv) for argv in _dockerfile_commands()]
    for name, service in _compose()["services"].items():
        if "command" in service:
            found += [(f"compose {name}", argv) for argv in _argv_lines(service["command"])]
    pod = _pod()
    for container in [*pod["initContainers"], *pod["containers"]]:
        command = [*container.get("command", []), *container.get("args", [])]
        found += [(f"k8s {container['name']}", argv) for argv in _argv_lines(command)]
    for path in UNITS:
        text = path.read_text(encoding="utf-8")
        for key, values in _unit(path).items():
            if key.startswith("Exec"):
                found += [(f"{path.name} {key}", argv)
                          for value in values for argv in shell_commands(value.lstrip("-"))]
        comments = "\n".join(line.lstrip("#") for line in text.splitlines()
                             if line.startswith("#   "))
        found += [(f"{path.name} comment", argv) for argv in shell_commands(comments)]
    secrets_comments = "\n".join(
        line.lstrip("#") for line in (K8S / "secrets.example.yaml").read_text().splitlines()
        if line.startswith("#   ")
    )
    found += [("secrets.example.yaml", argv) for argv in shell_commands(secrets_comments)]
    return found


_COMMAND_LINES = _all_command_lines()


# --- every file parses, every command line is accepted ----------------------------------------


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_under_deploy_parses(path: Path) -> None:
    assert _documents(path), f"{path} holds no document"


def test_the_deployment_files_run_every_program_they_are_meant_to() -> None:
    programs = {(where.split()[0], program_of(argv)) for where, argv in _COMMAND_LINES}
    assert ("Dockerfile", "owm-coordinator") in programs
    assert {("compose", "owm-coordinator"), ("compose", "owm-node")} <= programs
    assert {("k8s", "owm-coordinator"), ("owm-node.service", "owm-node"),
            ("owm-coordinator.service", "owm-coordinator"),
            ("owm-mine-proxy.service", "owm-mine")} <= programs
    commands = {check(argv) for _, argv in _COMMAND_LINES}
    assert {"owm-coordinator init", "owm-coordinator migrate", "owm-coordinator serve",
            "owm-node init", "owm-node start", "owm-mine proxy"} <= commands


@pytest.mark.parametrize("where,argv", _COMMAND_LINES,
                         ids=[f"{w}: {' '.join(a)}" for w, a in _COMMAND_LINES])
def test_every_owm_command_line_in_deploy_is_accepted_by_the_program(where, argv) -> None:
    check(argv)


def test_a_renamed_flag_would_fail_the_command_line_check() -> None:
    with pytest.raises(AssertionError, match="No such option"):
        check(["owm-node", "start", "--configuration", "owm.toml"])
    with pytest.raises(AssertionError, match="no such command"):
        check(["owm-coordinator", "upgrade"])


# --- the environment: real settings of the program that reads them ---------------------------


def _service_environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: _interpolate(value) for key, value in (service.get("environment") or {}).items()}


def _compose_programs() -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for name, service in _compose()["services"].items():
        programs = {program_of(argv) for argv in _argv_lines(service.get("command", []))}
        for program in programs - {None}:
            found.append((name, str(program), _service_environment(service)))
    return found


def _check_environment(program: str, environ: dict[str, str]) -> None:
    kind = CoordinatorSettings if program == "owm-coordinator" else NodeSettings
    scheme = {k: v for k, v in environ.items() if k.startswith("OWM_") and "__" in k}
    # With no other program given, a variable of the other program is refused like a typo.
    config_sources.apply_environment({}, kind, (), scheme)
    if kind is CoordinatorSettings:
        load_coordinator_settings(None, environ=environ)
    else:
        load_node_settings(None, environ=environ)
    if "OWM_LOG_LEVEL" in environ:
        assert environ["OWM_LOG_LEVEL"].upper() in logging.getLevelNamesMapping()


@pytest.mark.parametrize("name,program,environ", _compose_programs(),
                         ids=[n for n, _, _ in _compose_programs()])
def test_every_compose_variable_is_a_setting_of_the_program_that_reads_it(name, program, environ):
    _check_environment(program, environ)


def test_every_kubernetes_variable_is_a_coordinator_setting() -> None:
    environ = dict(_k8s("ConfigMap", "owm-coordinator-config")["data"])
    environ.update(_k8s_secret("owm-coordinator-database")["stringData"])
    _check_environment("owm-coordinator", {k: str(v) for k, v in environ.items()})


def test_a_misspelt_variable_would_fail_the_environment_check() -> None:
    with pytest.raises(config_sources.SourceError, match="no such setting"):
        _check_environment("owm-node", {"OWM_NODE__HEALTH_PROT": "8081"})
    with pytest.raises(config_sources.SourceError, match="no such setting"):
        _check_environment("owm-node", {"OWM_FL__UPLOAD_URL": "http://x"})  # a coordinator key


# --- probes and scrape targets -----------------------------------------------------------------


def _port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def test_the_compose_health_check_asks_the_coordinators_api_port_for_a_served_path(
    setup: Setup,  # noqa: F811 - the fixture
) -> None:
    coordinator = _compose()["services"]["coordinator"]
    url = urlsplit(re.search(r"http://[^'\"]+", " ".join(coordinator["healthcheck"]["test"]))[0])
    assert url.port == _port(coordinator["environment"]["OWM_COORDINATOR__API_LISTEN"])
    assert setup.client().get(url.path).status_code == 200


def test_the_kubernetes_probes_ask_the_api_port_for_healthz_and_readyz(
    setup: Setup,  # noqa: F811 - the fixture
) -> None:
    container = _pod()["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = _k8s("ConfigMap", "owm-coordinator-config")["data"]
    assert ports["http"] == _port(config["OWM_COORDINATOR__API_LISTEN"])
    assert ports["grpc"] == _port(config["OWM_COORDINATOR__GRPC_LISTEN"])
    assert ports["metrics"] == _port(config["OWM_COORDINATOR__METRICS_LISTEN"])
    probes = {kind: container[kind]["httpGet"]
              for kind in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    client = setup.client()
    for probe in probes.values():
        assert probe["port"] == "http"
        assert client.get(probe["path"]).status_code == 200


def test_the_compose_prometheus_scrapes_the_ports_the_programs_listen_on() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "compose.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
               for job in config["scrape_configs"]}
    metrics = services["coordinator"]["environment"]["OWM_COORDINATOR__METRICS_LISTEN"]
    assert targets["owm-coordinator"] == [f"coordinator:{_port(metrics)}"]
    node_ports = sorted(int(services[n]["environment"]["OWM_NODE__HEALTH_PORT"])
                        for n in ("node-a", "node-b"))
    assert targets["owm-node"] == [f"127.0.0.1:{port}" for port in node_ports]
    for name in ("node-a", "node-b"):  # loopback-only /metrics: the nodes share its namespace
        assert services[name]["network_mode"] == "service:prometheus"
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in mounts


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: scripts/test "
                    "installs Debian's prometheus")
def test_the_compose_scrape_config_passes_promtool_check() -> None:
    done = subprocess.run(["promtool", "check", "config", "compose.yml"],
                          cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- secrets come from files and Secret objects, never values in the files ---------------------


def _k8s_secret(name: str) -> dict[str, Any]:
    found = [doc for doc in _documents(K8S / "secrets.example.yaml")
             if doc["metadata"]["name"] == name]
    assert len(found) == 1, name
    return found[0]


def test_the_compose_file_takes_every_secret_from_a_file() -> None:
    compose = _compose()
    declared = compose["secrets"]
    for name, service in compose["services"].items():
        for secret in service.get("secrets", []):
            assert secret in declared, f"{name}: secret {secret} is not declared"
        for key, value in _service_environment(service).items():
            if "/run/secrets/" in value:
                secret = value.rpartition("/run/secrets/")[2].split()[0]
                assert secret in service.get("secrets", []), f"{name}: {key} reads {secret}"
            assert not config_sources.secret_keys_in({"s": {"k": value}}), f"{name}: {key}"
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/")
    assert (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()[-2:] == [
        "*", "!.gitignore"]


def test_the_kubernetes_pod_reads_its_secrets_from_secret_objects() -> None:
    pod = _pod()
    secret_refs = {ref["secretRef"]["name"] for c in [*pod["initContainers"], *pod["containers"]]
                   for ref in c.get("envFrom", []) if "secretRef" in ref}
    assert secret_refs == {"owm-coordinator-database"}
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert set(volumes.values()) == {"owm-coordinator-keys", "owm-coordinator-lightning"}
    config = _k8s("ConfigMap", "owm-coordinator-config")["data"]
    assert not config_sources.secret_keys_in({"s": dict(config)})
    lightning = _k8s_secret("owm-coordinator-lightning")["stringData"]
    for key, value in config.items():
        if str(value).startswith("/run/owm/lightning/"):
            assert value.rpartition("/")[2] in lightning, key
    keys = _k8s_secret("owm-coordinator-keys")["stringData"]
    copy = " ".join(pod["initContainers"][0]["command"])
    for key in keys:
        assert f"/secrets/keys/{key}" in copy
        assert any(str(v) == f"/run/owm/keys/{key}" for v in config.values()), key
    assert "install -m 0600" in copy  # the coordinator refuses keys readable by others
    kustomization = _documents(K8S / "kustomization.yaml")[0]
    assert "secrets.example.yaml" not in kustomization["resources"]
    assert {path for path in kustomization["resources"]} <= {p.name for p in K8S.glob("*.yaml")}


# --- non-root, read-only, least privilege ------------------------------------------------------


def test_the_kubernetes_pod_runs_as_non_root_with_a_read_only_root_filesystem() -> None:
    pod = _pod()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    migrate = [c for c in pod["initContainers"]
               if c.get("command", [])[:2] == ["owm-coordinator", "migrate"]]
    assert migrate, "no init container runs `owm-coordinator migrate` before serve"
    for container in [*pod["initContainers"], *pod["containers"]]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_the_dockerfile_builds_a_wheel_then_installs_it_into_a_runtime_that_is_not_root() -> None:
    build, runtime = _stages()
    assert any("pip wheel" in line for line in build)
    assert any("from=build,source=/wheels" in line for line in runtime)
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot checks it
    assert int(uid) == _pod()["securityContext"]["runAsUser"]


def test_the_dockerfile_copies_every_package_of_the_wheel_and_keeps_the_torch_pin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in text, package
        assert f"!{package}" in ignore, package
    pins = [d for d in project["project"]["dependencies"] if d.startswith("torch==")]
    assert re.search(r"ARG TORCH_VERSION=(\S+)", text)[1] == pins[0].removeprefix("torch==")
    extras = re.search(r"ARG OWM_EXTRAS=(\S+)", text)[1]
    assert extras in project["project"]["optional-dependencies"]
    assert _compose()["x-owm-image"]["build"]["args"]["OWM_EXTRAS"] in (
        project["project"]["optional-dependencies"])


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_systemd_unit_is_sandboxed(path: Path) -> None:
    unit = _unit(path)
    assert unit["User"][0] not in {"root", "0"}
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ProtectHome"] == ["yes"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["StateDirectory"] and unit["UMask"] == ["0077"]
    assert unit["SystemCallFilter"] == ["@system-service"]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_every_unit(tmp_path: Path) -> None:
    """``verify`` needs the ``ExecStart=`` binary to exist: the copies point at the programs
    installed for this test run instead of /opt/owm/bin."""
    installed = Path(shutil.which("owm-node") or ROOT / ".venv" / "bin" / "owm-node").parent
    for path in UNITS:
        text = path.read_text(encoding="utf-8").replace("/opt/owm/bin/", f"{installed}/")
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    done = subprocess.run([str(SYSTEMD_ANALYZE), "verify", *[p.name for p in UNITS]],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    # Warnings about the host's own units are not ours; any line naming our files is.
    ours = [line for line in output.splitlines() if any(p.name in line for p in UNITS)]
    assert done.returncode == 0 and not ours, output
