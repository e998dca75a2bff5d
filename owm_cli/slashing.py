"""``owm slashing-log verify``, ``owm slashing ack`` and ``owm slashing reverse``: check the
public slashing log, sign acknowledgements and reversals.

``slashing-log verify`` reads the whole log from the coordinator's database (``--config`` or
``--database-url``), from the public API (``--url``, GET /v1/network/slashing-log, paged) or from
a file holding that endpoint's JSON (``--file``), and checks the hash chain and every signature
against the coordinator's public key (SRS-LN-13, SRS-STAKE-06). It prints ``OK`` with the count
and head hash (exit 0), or the first bad index and why (exit 3). A truncated log is only visible
against a head published earlier: pass it as ``--expected-head``. Every reversal entry is then
checked against the maintainers' statements behind it (from the same source: GET
/v1/slashing/reversals/{log_index}, the coordinator database, or ``--statements FILE`` next to
``--file``): they hash to its ``statement_hash``, verify, name its log index and node, are signed
by exactly its ``maintainers`` and, given the maintainer keys (``--maintainer``,
``--maintainers FILE``, or ``[stake] maintainer_keys`` with ``--config``), by maintainers only.

``slashing ack`` writes a maintainer acknowledgement envelope signed with the maintainer's key
file (SRS-SEC-14), to a file or stdout, or with ``--api URL`` submits it to the coordinator
(POST /v1/slashing/acknowledgements) and prints what it did (recorded, how many maintainers
back that evidence, whether the node is now slashed). The envelope is signed for one coordinator
(SRS-SEC-03): ``--coordinator`` (its public key), else the one ``--api`` answers.

``slashing reverse`` writes a maintainer's ``slashing_reversal`` statement upholding an appeal
against one slashing-log entry, the same way (``--api``: POST /v1/slashing/reversals); two
distinct maintainers who did not acknowledge the slashing reverse it (docs/slashing.md,
"Appeals"). The log's reversal entries are checked by ``slashing-log verify`` too.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from owm_adapters.storage import keystore
from owm_cli.api_client import post_json, v1_url
from owm_cli.options import COORDINATOR_OPTION, chosen_coordinator, json_option, render
from owm_core.errors import DomainError
from owm_core.identity.chained_log import LogVerification
from owm_core.identity.envelopes import (
    AckVerdict,
    Envelope,
    EnvelopeKind,
    MaintainerAcknowledgement,
    SlashingReversal,
    from_bytes,
    seal,
    to_bytes,
)
from owm_core.identity.keys import parse_public_key
from owm_core.ports.repositories import Repositories
from owm_core.stake.reversals import verify_reversal_statements
from owm_core.stake.slashing import (
    GENESIS_HASH,
    SlashingLogRecord,
    SlashingReason,
    SlashingReversalEntry,
    log_entry_from_dict,
    verify_log,
)

EXIT_BAD_LOG = 3
PAGE = 100


def _entries_from_json(data: object) -> list[Any]:
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        return list(data["entries"])
    if isinstance(data, list):
        return data
    raise click.UsageError("the JSON holds no 'entries' list")


def _from_url(url: str, api_key: str | None = None) -> list[Any]:
    if not url.rstrip("/").endswith("/slashing-log"):
        url = url.rstrip("/") + "/v1/network/slashing-log"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    found: list[Any] = []
    while True:
        page_url = f"{url}?{urllib.parse.urlencode({'start': len(found), 'limit': PAGE})}"
        request = urllib.request.Request(page_url, headers=headers)  # noqa: S310 (user's URL)
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 (user's URL)
            page = _entries_from_json(json.loads(reply.read()))
        found.extend(page)
        if len(page) < PAGE:
            return found


StatementsOf = Callable[[SlashingReversalEntry], "list[Any] | None"]
"""The published statements (envelope JSON objects) behind one reversal entry; None: none."""


def _statements_from_url(url: str, api_key: str | None) -> StatementsOf:
    base = url.rstrip("/").removesuffix("/network/slashing-log").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def fetch(entry: SlashingReversalEntry) -> list[Any] | None:
        page_url = f"{base}/v1/slashing/reversals/{entry.reverses}"
        request = urllib.request.Request(page_url, headers=headers)  # noqa: S310 (user's URL)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
                return _statement_list(json.loads(reply.read()), entry)
        except urllib.error.HTTPError as failed:
            if failed.code == 404:
                return None
            raise click.ClickException(f"{page_url} answered {failed.code}") from None

    return fetch


def _statement_list(answer: object, entry: SlashingReversalEntry) -> list[Any] | None:
    """The statements of one GET /v1/slashing/reversals/{i} answer, if it is about ``entry``."""
    if not isinstance(answer, dict) or answer.get("reversed_by") != entry.index:
        return None
    statements = answer.get("statements")
    return statements if isinstance(statements, list) else None


def _statements_from_file(path: Path | None) -> StatementsOf:
    """``--statements FILE``: a list of GET /v1/slashing/reversals/{i} answers (or one)."""
    answers: list[Any] = []
    if path is not None:
        data = json.loads(path.read_text(encoding="utf-8"))
        answers = data if isinstance(data, list) else [data]

    def fetch(entry: SlashingReversalEntry) -> list[Any] | None:
        found = (_statement_list(a, entry) for a in answers)
        return next((s for s in found if s is not None), None)

    return fetch


def _from_database(
    config: Path | None, database_url: str | None
) -> tuple[list[Any], str | None, StatementsOf, tuple[str, ...]]:
    """The log, the coordinator key (``--config``), the statements behind each reversal (as
    the coordinator publishes them) and the configured maintainer keys (``--config``)."""
    from owm_adapters.bootstrap.coordinator import repositories_from
    from owm_adapters.bootstrap.settings import load_coordinator_settings
    from owm_adapters.storage.sql import open_repositories

    key: str | None = None
    maintainers: tuple[str, ...] = ()
    repositories: Repositories
    if database_url:
        repositories = open_repositories(database_url)
    else:
        settings = load_coordinator_settings(config)
        repositories = repositories_from(settings)
        maintainers = tuple(settings.stake.maintainer_keys)
        key_path = Path(settings.coordinator.signing_key_path).expanduser()
        if key_path.exists():
            key = keystore.load_identity(key_path).public_key_hex

    def fetch(entry: SlashingReversalEntry) -> list[Any] | None:
        found = repositories.slashing_evidence.counted_reversal_statements(entry.index)
        return [json.loads(to_bytes(e)) for e in found] if found else None

    raw = [e.to_dict() for e in repositories.slashing_log.entries(0, None)]
    return raw, key, fetch, maintainers


def _maintainer_set(keys: Sequence[str], path: Path | None) -> frozenset[str] | None:
    """``--maintainer`` keys and ``--maintainers FILE`` (one hex key a line, ``#`` comments);
    None when neither is given."""
    given = list(keys)
    if path is not None:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                given.append(line)
    if not given and path is None:
        return None
    try:
        return frozenset(parse_public_key(k.strip().lower(), "maintainer") for k in given)
    except DomainError as exc:
        raise click.UsageError(exc.message) from None


def check_statements(
    entries: Sequence[SlashingLogRecord],
    fetch: StatementsOf,
    maintainer_keys: frozenset[str] | None,
    coordinator_key: str,
) -> LogVerification:
    """Fetch and parse the statements behind each reversal entry of an intact log and check
    them (:func:`~owm_core.stake.reversals.verify_reversal_statements`; signed for the
    coordinator whose key is ``coordinator_key``, the log's)."""
    statements: dict[int, list[Envelope]] = {}
    for entry in entries:
        if not isinstance(entry, SlashingReversalEntry):
            continue
        raw = fetch(entry)
        if raw is None:
            continue
        try:
            statements[entry.index] = [from_bytes(json.dumps(s).encode()) for s in raw]
        except DomainError as exc:
            return LogVerification(False, entry.index, f"malformed statement: {exc.message}")
    return verify_reversal_statements(entries, statements, coordinator_key, maintainer_keys)


@click.group("slashing-log")
def slashing_log() -> None:
    """The public slashing log (SRS-STAKE-06): verify it has not been tampered with."""


@slashing_log.command("verify")
@click.option("--url", help="Coordinator API base URL or the full slashing-log URL.")
@click.option(
    "--file", "file_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON exported from GET /v1/network/slashing-log.",
)
@click.option(
    "--statements", "statements_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --file: JSON list of GET /v1/slashing/reversals/{log_index} answers.",
)
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="coordinator.toml: read the coordinator database (and its key, if present).",
)
@click.option("--database-url", help="Read the log from this coordinator database URL.")
@click.option("--coordinator-key", help="The coordinator's Ed25519 public key (64 hex).")
@click.option("--expected-head", help="The head hash published earlier (detects truncation).")
@click.option(
    "--maintainer", "maintainer_keys", multiple=True,
    help="A maintainer's Ed25519 public key (repeatable): reversal signers must be among them.",
)
@click.option(
    "--maintainers", "maintainers_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File of maintainer public keys, one hex key a line (# comments).",
)
@click.option(
    "--api-key", envvar="OWM_API_KEY",
    help="API key for --url (the API answers 402 without a credential); env OWM_API_KEY.",
)
@json_option("the verdict (ok, entries and head, or the bad index and why)")
def verify(
    url: str | None,
    file_path: Path | None,
    statements_path: Path | None,
    config_path: Path | None,
    database_url: str | None,
    coordinator_key: str | None,
    expected_head: str | None,
    maintainer_keys: tuple[str, ...],
    maintainers_path: Path | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Check the hash chain and signatures of the slashing log, that every reversal names an
    earlier slashing of its node not reversed before, and the maintainers' statements behind
    each reversal; exit 3 at the first bad entry."""
    sources = [s for s in (url, file_path, config_path, database_url) if s]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --url, --file, --config, --database-url")
    if statements_path is not None and file_path is None:
        raise click.UsageError("--statements goes with --file")
    key_from_config: str | None = None
    configured: tuple[str, ...] = ()
    if url:
        raw, fetch = _from_url(url, api_key), _statements_from_url(url, api_key)
    elif file_path is not None:
        raw = _entries_from_json(json.loads(file_path.read_text(encoding="utf-8")))
        fetch = _statements_from_file(statements_path)
    else:
        raw, key_from_config, fetch, configured = _from_database(config_path, database_url)
    key = coordinator_key or key_from_config
    if not key:
        raise click.UsageError("--coordinator-key is required for this source")
    key = parse_public_key(key.strip().lower(), "coordinator_key")
    maintainers = _maintainer_set(maintainer_keys or configured, maintainers_path)

    def check(entries: list[Any]) -> LogVerification:
        result = verify_log(entries, key, expected_head)
        return check_statements(entries, fetch, maintainers, key) if result.ok else result

    reversals = sum(1 for e in raw if isinstance(e, dict) and "reverses" in e)
    check_log(raw, log_entry_from_dict, check, as_json, reversals=reversals,
              maintainers_checked=maintainers is not None)  # fmt: skip
    if reversals and maintainers is None and not as_json:
        click.echo("note: reversal signers were not checked against the maintainer keys "
                   "(pass --maintainer or --maintainers)", err=True)  # fmt: skip


def check_log(
    raw: list[Any],
    parse: Callable[[Any], Any],
    verify: Callable[[list[Any]], Any],
    as_json: bool,
    **extra: Any,
) -> None:
    """Parse every published entry with ``parse``, check them all with ``verify``; print
    ``OK`` with the count and head hash, or the first bad entry and exit 3. Shared by
    ``owm slashing-log verify`` and ``owm gov log verify`` (both hash-chained, signed logs)."""
    entries: list[Any] = []
    for i, item in enumerate(raw):
        try:
            entries.append(parse(item))
        except DomainError as exc:
            _bad({"ok": False, "index": i, "problem": f"malformed: {exc.message}"}, as_json)
    result = verify(entries)
    if not result.ok:
        _bad({"ok": False, "index": result.index, "problem": result.problem}, as_json)
    head = entries[-1].entry_hash() if entries else GENESIS_HASH
    report = {"ok": True, "entries": len(entries), "head": head, **extra}
    render(report, as_json, lambda: [f"OK {len(entries)} entries, head {head}"])


def _bad(report: dict[str, Any], as_json: bool) -> None:
    """Print the first bad entry and why, then exit 3."""
    render(report, as_json, lambda: [f"BAD entry {report['index']}: {report['problem']}"])
    sys.exit(EXIT_BAD_LOG)


_F = TypeVar("_F", bound=Callable[..., Any])


def _delivery_options(command: _F) -> _F:
    """``--out``, ``--at``, ``--api`` and ``--json``: where a signed envelope goes."""
    for option in reversed([
        click.option(
            "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
            help="Write the envelope here (default: stdout).",
        ),
        click.option(
            "--at", "issued_at", type=int, default=None,
            help="Issue time (POSIX s; default now).",
        ),
        click.option(
            "--api", "api_url", default=None,
            help="Submit it to this coordinator API (base URL, e.g. http://127.0.0.1:8000).",
        ),
        json_option("the coordinator's answer with --api (else where the envelope went)"),
        COORDINATOR_OPTION,
    ]):  # fmt: skip
        command = option(command)
    return command


@click.group("slashing")
def slashing() -> None:
    """Maintainer tools: acknowledge slashing tier-2/3 nodes (SRS-SEC-14), reverse a slashing
    on an upheld appeal."""


@slashing.command("ack")
@click.option(
    "--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The maintainer's Ed25519 key file (0600; `owm-node init --data-dir DIR` creates "
    "DIR/identity.key).",
)
@click.option("--node-id", required=True, help="The node the evidence is about.")
@click.option("--evidence-hash", required=True, help="SHA-256 hex of the evidence.")
@click.option(
    "--reason", required=True, type=click.Choice([r.value for r in SlashingReason]),
    help="The slashing reason.",
)
@click.option(
    "--verdict", default="slash", show_default=True,
    type=click.Choice([v.value for v in AckVerdict]),
    help="slash: back slashing the node on this evidence; dismiss: reject the case.",
)
@_delivery_options
def ack(
    key_path: Path,
    node_id: str,
    evidence_hash: str,
    reason: str,
    verdict: str,
    out_path: Path | None,
    issued_at: int | None,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Sign a maintainer acknowledgement envelope (canonical JSON) for the coordinator."""
    body = MaintainerAcknowledgement(
        node_id=node_id, evidence_hash=evidence_hash, reason=reason, verdict=verdict
    )
    _sign_and_send(
        key_path, EnvelopeKind.MAINTAINER_ACK, body, issued_at, out_path, api_url, as_json,
        what="acknowledgement", path="/slashing/acknowledgements", summary=_submitted,
    )  # fmt: skip


def _sign_and_send(
    key_path: Path,
    kind: EnvelopeKind,
    body: MaintainerAcknowledgement | SlashingReversal,
    issued_at: int | None,
    out_path: Path | None,
    api_url: str | None,
    as_json: bool,
    *,
    what: str,
    path: str,
    summary: Callable[[dict[str, Any]], str],
) -> None:
    """Seal ``body`` with the maintainer's key for the coordinator (``--coordinator``, else the
    one ``--api`` answers: SRS-SEC-03); write it to ``out_path`` or stdout, or with ``api_url``
    POST it to ``path`` and print the coordinator's answer (``summary``)."""
    import time

    identity = keystore.load_identity(key_path.expanduser())
    when = int(time.time()) if issued_at is None else issued_at
    audience = chosen_coordinator(api_url)
    raw = to_bytes(seal(identity, kind, body, os.urandom(16), when, audience=audience))
    if out_path is not None:
        out_path.write_bytes(raw)
        written = {"signer": identity.public_key_hex, "written_to": str(out_path)}
        if api_url is None or not as_json:
            render(written, as_json, lambda: [
                f"{what} by {identity.public_key_hex} written to {out_path}"])
    elif api_url is None:
        click.echo(raw.decode("utf-8"))  # the envelope: JSON already, with or without --json
    if api_url is not None:
        answer = post_json(v1_url(api_url, path), raw)
        render(answer, as_json, lambda: [summary(answer)])


def _submitted(answer: dict[str, Any]) -> str:
    """One line saying what the coordinator did with the acknowledgement."""
    state = "known already" if not answer.get("recorded") else "recorded"
    line = (
        f"{state}: {answer.get('acknowledgements')} of {answer.get('quorum')} maintainers back "
        f"{answer.get('reason')} {answer.get('evidence_hash')} against {answer.get('node_id')}"
    )
    entry = answer.get("log_entry")
    if entry is not None:
        return f"{line}; slashed, log entry {entry.get('index')}"
    return f"{line}; {'already slashed' if answer.get('slashed') else 'not slashed yet'}"


@slashing.command("reverse")
@click.option(
    "--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Your maintainer Ed25519 key file (a key in the coordinator's [stake] maintainer_keys "
    "that did not acknowledge this slashing).",
)
@click.option(
    "--log-index", required=True, type=click.IntRange(min=0),
    help="Index of the slashing-log entry whose appeal is upheld (GET "
    "/v1/network/slashing-log).",
)
@click.option("--node-id", required=True, help="The slashed node that entry names.")
@_delivery_options
def reverse(
    key_path: Path,
    log_index: int,
    node_id: str,
    out_path: Path | None,
    issued_at: int | None,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Sign a statement reversing a slashing on an upheld appeal (docs/slashing.md, Appeals).

    Two distinct maintainers who did not acknowledge the slashing must each send one for the
    same log index; the second completes the reversal: the coordinator appends a reversal
    entry to the slashing log, lifts the node's cooldown and re-issues its forfeited rewards.
    """
    body = SlashingReversal(log_index=log_index, node_id=node_id)
    _sign_and_send(
        key_path, EnvelopeKind.SLASHING_REVERSAL, body, issued_at, out_path, api_url, as_json,
        what="reversal statement", path="/slashing/reversals", summary=_reversal_submitted,
    )  # fmt: skip


def _reversal_submitted(answer: dict[str, Any]) -> str:
    """One line saying what the coordinator did with the reversal statement."""
    state = "known already" if not answer.get("recorded") else "recorded"
    backers = answer.get("maintainers") or []
    line = (
        f"{state}: {len(backers)} of {answer.get('quorum')} maintainers back reversing "
        f"slashing-log entry {answer.get('log_index')} of {answer.get('node_id')}"
    )
    entry = answer.get("log_entry")
    if entry is None:
        return f"{line}; not reversed yet"
    return (
        f"{line}; reversed by log entry {entry.get('index')}, cooldown lifted, "
        f"{answer.get('reissued_payments')} forfeited payments re-issued "
        f"({answer.get('reissued_msat')} msat)"
    )
