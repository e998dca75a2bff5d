"""``owm-node``: what a node operator runs (SRS 4.1)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from owm_adapters.bootstrap import logs
from owm_adapters.bootstrap.settings import (
    NODE_TEMPLATE,
    ConfigError,
    NodeSettings,
    load_node_settings,
)
from owm_adapters.files import write_private_text
from owm_adapters.storage import keystore
from owm_cli.errors import OwmGroup
from owm_cli.options import (
    chain_options,
    config_option,
    json_option,
    logging_options,
    plain,
    render,
    version_option,
)


@click.group(cls=OwmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@version_option()
@logging_options
def cli(log_level: str | None, log_format: str) -> None:
    """Run an OWM node: contribute compute, earn satoshis over Lightning.

    \b
    First time:   owm-node init            (identity key + commented owm.toml)
    Check:        owm-node hardware        (GPUs, RAM, tier)
    Run:          owm-node start --config owm.toml
    Status:       owm-node status          (identity, coordinator, stake; --json)
    Inspect:      owm-node tasks | owm-node earnings | curl 127.0.0.1:8080/health
    """
    logs.configure(log_level, log_format)


_CONFIG_OPTION = config_option("The node's owm.toml (see `owm-node init`).", Path("owm.toml"))


@cli.command()
@config_option("Where to write the commented configuration file.", Path("owm.toml"))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default ~/.owm). The key goes to DATA_DIR/identity.key unless "
    "OWM_IDENTITY_KEY_PATH is set.",
)
@json_option("the identity and the files written")
def init(config_path: Path, data_dir: Path | None, as_json: bool) -> None:
    """Create this node's Ed25519 identity and a commented owm.toml (SRS-NODE-02).

    Refuses to overwrite an existing identity or configuration file.
    """
    if config_path.exists():
        raise ConfigError(f"{config_path} already exists; refusing to overwrite it")
    configured_key = str(data_dir / "identity.key") if data_dir is not None else None
    key_path = keystore.default_key_path(configured_key)
    identity = keystore.create_identity(key_path)
    write_private_text(
        config_path,
        NODE_TEMPLATE.format(
            data_dir=str(data_dir) if data_dir is not None else "~/.owm",
            identity_key=str(key_path),
        ),
        exclusive=True,
    )
    report = {"identity_key_path": str(key_path), "node_id": identity.node_id,
              "public_key": identity.public_key_hex, "config_path": str(config_path)}
    render(report, as_json, lambda: [
        f"identity   {key_path} (mode 0600; never share this file)",
        f"node id    {identity.node_id}",
        f"public key {identity.public_key_hex}",
        f"config     {config_path} (mode 0600)",
        "next: set [lightning] node_uri and, from your coordinator's `owm-coordinator "
        "init`, [coordinator] tls_fingerprint and public_key in the config, then "
        f"`owm-node start --config {config_path}`",
    ])


_CHAIN_OPTIONS = chain_options(credentials=False)


def _settings(config_path: Path) -> NodeSettings:
    return load_node_settings(config_path if config_path.exists() else None)


@contextlib.contextmanager
def _operator_output(log_format: str) -> Iterator[Callable[[str], None]]:
    """Where the daemon's lines for its operator go while it runs. ``text``: stdout, as they
    always were (their records on ``owm_adapters.node.events`` are held back meanwhile, or each
    line would show twice). ``json``: nowhere on stdout; each line is a JSON log record with
    its fields on stderr, so a log pipeline reads one JSON object per line."""
    import logging
    import sys

    from owm_adapters.node.context import EVENTS_LOGGER

    if log_format == "json":
        yield lambda _line: None
        return

    def echo(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    events = logging.getLogger(EVENTS_LOGGER)
    held_back = logging.NullHandler()
    events.addHandler(held_back)
    events.propagate = False
    try:
        yield echo
    finally:
        events.propagate = True
        events.removeHandler(held_back)


@cli.command()
@_CONFIG_OPTION
def start(config_path: Path) -> None:
    """Run the node until SIGTERM or Ctrl-C (SRS-NODE-01).

    Registers with the coordinator (printing the stake channel to open on first
    registration), publishes a signed capability manifest every 60 s, executes tasks in
    isolated subprocesses and reports signed proofs. SIGTERM drains: no new tasks, running
    ones finish and are reported, then exit 0 (SRS-NODE-09).
    """
    import sys

    from owm_adapters.bootstrap.node import build_node
    from owm_adapters.node.context import note
    from owm_cli.signals import stopped_by_signals

    settings = load_node_settings(config_path)
    log_format = click.get_current_context().find_root().params.get("log_format", "text")
    with stopped_by_signals() as stop, _operator_output(log_format) as say:
        with build_node(settings, say=say).running() as node:
            daemon, health = node.daemon, node.health
            route = f" via SOCKS5 {settings.coordinator.socks5_proxy}" if node.via_proxy else ""
            node_id, tier = daemon.identity.node_id, daemon.manifest.tier.value
            health_url = f"http://{health.host}:{health.port}/health"
            note(say, f"node {node_id}  tier {tier}", node_id=node_id, tier=tier)
            note(say, f"coordinator {node.coordinator_url}{route}", node_id=node_id,
                 coordinator_url=node.coordinator_url, via_proxy=node.via_proxy)
            note(say, f"health      {health_url}", node_id=node_id, health_url=health_url)
            code = daemon.run(stop)
        note(say, "stopped", node_id=node_id, exit_code=code)
    sys.exit(code)


@cli.command()
@_CONFIG_OPTION
@json_option()
def status(config_path: Path, as_json: bool) -> None:
    """Identity, configured coordinator and pin, stake state asked from the coordinator
    (3 s timeout) and earnings (SRS-NODE-11/12). An unreachable coordinator is reported
    ("coordinator unreachable") with exit code 0: the rest of the report still holds."""
    from owm_adapters.bootstrap.node_status import node_status

    report = node_status(_settings(config_path))
    render(report, as_json, lambda: _status_lines(report))


def _status_lines(report: dict[str, Any]) -> list[str]:
    identity, link, earned = report["identity"], report["coordinator"], report["earnings"]
    stake = link["stake"]
    return [
        f"node id     {identity['node_id'] or '-'}  (key {identity['key_path']})",
        f"coordinator {link['url']}",
        f"tls pin     {link['tls_fingerprint'] or 'not set'}",
        f"coord. key  {link['public_key'] or 'not set'}",
        "stake       " + (
            f"{stake['status']} tier {stake['tier']}, {stake['capacity_sat']} of "
            f"{stake['required_sats']} sat, channel {stake['channel_point'] or '-'}"
            if stake else (link["problem"] or "unknown")
        ),
        f"earnings    {earned['credited_msat'] // 1000} sat credited for "
        f"{earned['credited_tasks']} tasks, {earned['pending_msat'] // 1000} sat pending",
    ]


@cli.command()
@_CONFIG_OPTION
@click.option("--limit", default=20, show_default=True, help="How many recent tasks to show.")
@json_option("the tasks")
def tasks(config_path: Path, limit: int, as_json: bool) -> None:
    """The latest tasks from the local task log (SRS-NODE-06)."""
    from owm_adapters.node.task_log import LOG_FILE, TaskLog

    settings = _settings(config_path)
    path = Path(settings.node.data_dir).expanduser() / LOG_FILE
    rows = []
    if path.exists():
        task_log = TaskLog(path)
        try:
            rows = task_log.recent(limit)
        finally:
            task_log.close()
    report = {"tasks": [plain(row) for row in rows]}
    render(report, as_json, lambda: _task_lines(report["tasks"], path))


def _task_lines(rows: list[dict[str, Any]], path: Path) -> list[str]:
    if not rows and not path.exists():
        return [f"no tasks yet ({path} does not exist)"]
    lines = [f"{'task':<44} {'type':<21} {'state':<9} {'ms':>7} {'msat':>9} payment"]
    for row in rows:
        ms = row["execution_ms"] if row["execution_ms"] is not None else "-"
        lines.append(
            f"{row['replica_id'][:44]:<44} {row['task_type'][:21]:<21} {row['state']:<9} "
            f"{ms:>7} {row['price_msat']:>9} {row['payment_status']}"
            + (f"  ({row['reason'][:60]})" if row["reason"] else "")
        )
    return lines


@cli.command()
@_CONFIG_OPTION
@json_option("the earnings")
def earnings(config_path: Path, as_json: bool) -> None:
    """What this node has earned, from the local task log (SRS-NODE-06)."""
    from owm_adapters.node.task_log import LOG_FILE, Earnings, TaskLog

    settings = _settings(config_path)
    path = Path(settings.node.data_dir).expanduser() / LOG_FILE
    e = Earnings(0, 0, 0, 0, 0, 0, 0, 0)
    if path.exists():
        task_log = TaskLog(path)
        try:
            e = task_log.earnings()
        finally:
            task_log.close()
    render(plain(e), as_json, lambda: [
        f"credited   {e.credited_msat // 1000} sat ({e.credited_msat} msat) "
        f"for {e.credited_tasks} tasks",
        f"pending    {e.pending_msat // 1000} sat ({e.pending_msat} msat) "
        f"for {e.pending_tasks} tasks awaiting verification",
        f"forfeited  {e.forfeited_msat // 1000} sat ({e.forfeited_msat} msat) "
        f"for {e.forfeited_tasks} tasks",
        f"failed     {e.failed_tasks} tasks; rejected {e.rejected_tasks} invalid tasks",
    ])


@cli.command()
@_CONFIG_OPTION
@json_option("the hardware report")
def hardware(config_path: Path, as_json: bool) -> None:
    """The GPUs, memory and tier this machine would register with (SRS-NODE-03)."""
    from owm_adapters.bootstrap.node import detect_hardware

    settings = _settings(config_path)
    report = detect_hardware(settings.node.bandwidth_mbps)
    render(plain(report), as_json, lambda: _hardware_lines(report))


def _hardware_lines(report: Any) -> list[str]:
    lines = [] if report.devices else ["gpus       none (CPU only)"]
    for device in report.devices:
        lines.append(f"gpu {device.index}      {device.vendor.value} {device.name} "
                     f"{device.vram_mb} MiB" + (f" driver {device.driver}" if device.driver
                                                else ""))
    lines.append(f"ram        {report.hardware.ram_mb} MiB")
    lines.append(f"bandwidth  {report.hardware.bandwidth_mbps} Mbit/s (configured estimate)")
    lines.append(f"tier       {report.tier.value}" if report.tier is not None
                 else f"tier       none: {report.below_minimum}")
    lines += [f"problem    {problem}" for problem in report.problems]
    return lines


@cli.command("install-weights")
@click.argument("version_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("weights", metavar="WEIGHTS")
@click.argument("proof_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_CONFIG_OPTION
@_CHAIN_OPTIONS
@json_option("the outcome")
def install_weights(
    version_file: Path, weights: str, proof_file: Path, config_path: Path, rpc_url: str | None,
    rpc_cookie: Path | None, local_chain: Path | None, network: str | None, as_json: bool,
) -> None:
    """Install a model version's weights after its OpenTimestamps proof verifies (SRS-NODE-10).

    VERSION_FILE is the version's JSON (version, sub_model, digest, created_at, parent),
    WEIGHTS a .npz/.pt file or an http(s) URL (downloaded over clearnet only, SRS-NET-04),
    PROOF_FILE its .ots proof. A failed or pending proof installs nothing: the previous
    version keeps answering (exit 3).
    """
    import json
    import sys

    from owm_adapters.bootstrap.node import data_dir
    from owm_adapters.node.weights import (
        CachedModelRuntime,
        download,
        install_weights_file,
        model_cache_dir,
    )
    from owm_adapters.provenance.ots import OpenTimestamps
    from owm_cli.ots import chain_for
    from owm_core.provenance.versions import ModelVersion

    settings = _settings(config_path)
    chain, net = chain_for(rpc_url, None, None, rpc_cookie, local_chain, network)
    if chain is None:
        raise click.UsageError("give --bitcoin-rpc URL or --local-chain PATH to check the proof")
    try:
        version = ModelVersion(**json.loads(version_file.read_text(encoding="utf-8")))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{version_file}: not a model version: {exc}") from None
    if weights.startswith(("http://", "https://")):
        raw = download(weights)
    else:
        raw = Path(weights).read_bytes()
    runtime = CachedModelRuntime(
        model_cache_dir(settings.node.model_cache_dir, str(data_dir(settings)))
    )
    outcome = install_weights_file(runtime, OpenTimestamps(chain, net), version, raw, weights,
                                   proof_file.read_bytes())
    answering = runtime.loaded_version(version.sub_model) or "genesis"
    height = outcome.verification.height if outcome.verification is not None else None
    report = {"installed": outcome.installed, "version_id": outcome.version_id,
              "reason": None if outcome.installed else outcome.reason, "height": height,
              "answering": answering}
    render(report, as_json, lambda: [
        f"installed  {outcome.version_id}  (Bitcoin block {height})" if outcome.installed
        else f"not installed: {outcome.reason}; {answering} keeps answering"])
    if not outcome.installed:
        sys.exit(3)


@cli.command("verify-release")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--manifest", "manifest_path", required=True, metavar="M.json",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The release manifest (canonical JSON naming the archive's SHA-256).")
@click.option("--ots", "proof_path", required=True, metavar="M.json.ots",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The OpenTimestamps proof of the manifest.")
@click.option("--signatures", "signatures_path", metavar="M.json.sig",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The maintainers' signatures [default: the manifest's path + .sig].")
@_CONFIG_OPTION
@_CHAIN_OPTIONS
@click.option("--stage", is_flag=True,
              help="Copy the verified package to DATA_DIR/updates/ (nothing is installed).")
@json_option("the verdict")
def verify_release(
    archive: Path, manifest_path: Path, proof_path: Path, signatures_path: Path | None,
    config_path: Path, rpc_url: str | None, rpc_cookie: Path | None, local_chain: Path | None,
    network: str | None, stage: bool, as_json: bool,
) -> None:
    """Verify a signed, timestamped OWM release package before an update (SRS 4.1).

    ARCHIVE must hash to the manifest's archive_sha256, the manifest must be signed by
    [node] release_threshold of the [node] release_keys in the config, and its OpenTimestamps
    proof must be confirmed in a Bitcoin block. With --stage the package is copied to
    DATA_DIR/updates/owm-VERSION/ for you or your service manager to install; nothing is
    executed. Exit 0 verified (and staged), 3 refused (the reason is printed).
    """
    import sys

    from owm_adapters.bootstrap.node import data_dir
    from owm_adapters.node.self_update import stage_update, verify_release_package
    from owm_adapters.provenance.ots import OpenTimestamps
    from owm_cli.ots import chain_for

    settings = _settings(config_path)
    chain, net = chain_for(rpc_url, None, None, rpc_cookie, local_chain, network)
    if chain is None:
        raise click.UsageError("give --bitcoin-rpc URL or --local-chain PATH to check the proof")
    timestamping = OpenTimestamps(chain, net)
    keys = settings.node.release_keys
    threshold = settings.node.release_threshold
    if stage:
        outcome = stage_update(archive, manifest_path, proof_path, keys, timestamping,
                               data_dir(settings), signatures_path=signatures_path,
                               threshold=threshold)
        verdict = outcome.verdict
    else:
        verdict = verify_release_package(archive, manifest_path, proof_path, keys, timestamping,
                                         signatures_path=signatures_path, threshold=threshold)
    staged = str(outcome.path) if stage and verdict.ok else None
    lines = [verdict.message]
    if not verdict.ok:
        lines.append("nothing staged" if stage else "do not install this package")
    elif staged is not None:
        lines.append(f"staged     {staged} (install it yourself; nothing was executed)")
    render({"ok": verdict.ok, "message": verdict.message, "staged": staged}, as_json,
           lambda: lines)
    if not verdict.ok:
        sys.exit(3)


@cli.command("coordinator-info")
@click.argument("api_url", metavar="API_URL")
@json_option("the coordinator's endpoints")
def coordinator_info(api_url: str, as_json: bool) -> None:
    """What a coordinator publishes at API_URL/v1/network/coordinator: the key and TLS
    fingerprint to pin and, when it runs one, its Tor onion address (SRS-COORD-07), with the
    [coordinator] lines that route the control plane through Tor. Asked over clearnet, no
    proxy, no redirects; the pins make a forged answer fail at the first connection."""
    import json
    import urllib.error

    from owm_adapters.net.destinations import clearnet_opener

    url = api_url.rstrip("/") + "/v1/network/coordinator"
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http(s) URL", param_hint="API_URL")
    try:
        with clearnet_opener().open(url, timeout=10) as response:
            info = json.loads(response.read(65_536))
        key, fingerprint, onion = (info["coordinator_key"], info["tls_fingerprint"],
                                   info["onion_address"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"{url} did not answer the coordinator's endpoints: "
                                   f"{getattr(exc, 'reason', exc)}") from None
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    click.echo(f"coordinator key   {key}")
    click.echo(f"TLS fingerprint   {fingerprint or '(not published)'}")
    click.echo(f"onion address     {onion or '(none: this coordinator runs no onion service)'}")
    if onion:
        click.echo("\n[coordinator]     # in owm.toml, to reach the control plane through Tor")
        click.echo(f'url = "{onion}"\nsocks5_proxy = "127.0.0.1:9050"\npublic_key = "{key}"')
        if fingerprint:
            click.echo(f'tls_fingerprint = "{fingerprint}"')
