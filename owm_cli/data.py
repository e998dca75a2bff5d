"""``owm data``: contribute datasets to the conglomerate's sub-models (SRS 2.2).

``owm data validate FILE`` checks an ``owm-dataset/1`` file locally — size, UTF-8, schema,
licences (docs/conglomerate.md) — and prints its dataset id, content digest and how many
passages it makes; an invalid file is one ``error: <field>: <reason>`` line and exit code 2.
``owm data submit FILE --api URL --api-key KEY`` validates the same way, then POSTs it to
``/v1/data/datasets``; the API key's owner becomes the contributor credited whenever the data
grounds an answer. ``owm data payee NODE_KEY`` names the Lightning node the credits are paid
to; ``owm data credits`` shows what was credited, paid and is owed, and the payouts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from owm_cli.api_client import get_json, post_json, v1_url
from owm_cli.errors import OwmGroup
from owm_cli.options import json_option, render
from owm_core.knowledge.datasets import MAX_DATASET_BYTES, Dataset, chunk_text, parse_dataset


def _read(path: Path) -> tuple[bytes, Dataset]:
    size = path.stat().st_size
    if size > MAX_DATASET_BYTES:
        raise click.ClickException(
            f"{path}: {size} bytes; a dataset is at most {MAX_DATASET_BYTES} bytes "
            "(split it into several datasets)"
        )
    raw = path.read_bytes()
    return raw, parse_dataset(raw)


def _facts(dataset: Dataset) -> dict[str, Any]:
    """What ``validate`` reports about ``dataset``, as text and as ``--json``."""
    return {
        "valid": True, "dataset_id": dataset.dataset_id, "name": dataset.name,
        "documents": len(dataset.documents),
        "passages": sum(len(chunk_text(d.text)) for d in dataset.documents),
        "sub_models": list(dataset.sub_models), "licences": list(dataset.licences),
        "digest": dataset.digest,
    }


def _summary(facts: dict[str, Any]) -> str:
    return (
        f"{facts['dataset_id']} {facts['name']}: {facts['documents']} documents, "
        f"{facts['passages']} passages for {', '.join(facts['sub_models'])}; "
        f"licences {', '.join(facts['licences'])}; sha256 {facts['digest']}"
    )


@click.group("data", cls=OwmGroup)
def data() -> None:
    """Contribute datasets to the conglomerate's sub-models."""


@data.command("validate")
@click.argument("path", metavar="FILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option("the dataset's summary")
def validate(path: Path, as_json: bool) -> None:
    """Check an owm-dataset/1 FILE locally (no network)."""
    _, dataset = _read(path)
    facts = _facts(dataset)
    render(facts, as_json, lambda: [f"valid: {_summary(facts)}"])


@data.command("submit")
@click.argument("path", metavar="FILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--api", "api_url", envvar="OWM_API", required=True,
    help="The coordinator's API base URL, e.g. http://127.0.0.1:8000 (env OWM_API).",
)
@click.option(
    "--api-key", envvar="OWM_API_KEY", required=True,
    help="Your API key (env OWM_API_KEY); its owner is credited as the contributor.",
)
@json_option("the API's answer")
def submit(path: Path, api_url: str, api_key: str, as_json: bool) -> None:
    """Validate FILE, then contribute it through POST /v1/data/datasets."""
    raw, dataset = _read(path)
    answer = post_json(v1_url(api_url, "/data/datasets"), raw, api_key=api_key, timeout_s=120)
    render(answer, as_json, lambda: [
        f"accepted: {answer.get('dataset_id')} {answer.get('name')} by "
        f"{answer.get('contributor')}: {answer.get('documents')} documents, "
        f"{answer.get('passages')} passages for {', '.join(answer.get('sub_models', []))}; "
        f"sha256 {answer.get('digest')}; OTS {answer.get('ots_status')}"
    ])
    if answer.get("digest") != dataset.digest:
        raise click.ClickException(
            f"the coordinator's digest {answer.get('digest')} differs from ours {dataset.digest}"
        )


_API = click.option(
    "--api", "api_url", envvar="OWM_API", required=True,
    help="The coordinator's API base URL, e.g. http://127.0.0.1:8000 (env OWM_API).",
)
_KEY = click.option(
    "--api-key", envvar="OWM_API_KEY", required=True,
    help="Your API key (env OWM_API_KEY): the contributor is its owner.",
)


def _statement_lines(answer: dict[str, Any]) -> list[str]:
    lines = [
        f"{answer.get('contributor')}: credited {answer.get('credited_msat')} msat, paid "
        f"{answer.get('paid_msat')} msat, owed {answer.get('owed_msat')} msat; paid to "
        f"{answer.get('ln_node') or '(no Lightning node named: owm data payee NODE_KEY)'}"
    ]
    lines += [
        f"payout {payout.get('payment_hash')} {payout.get('amount_msat')} msat "
        f"{payout.get('state')}"
        for payout in answer.get("payouts", [])
    ]
    return lines


@data.command("credits")
@_API
@_KEY
@json_option("the API's answer")
def credits(api_url: str, api_key: str, as_json: bool) -> None:
    """Show your data credits, their Lightning payouts and what is owed."""
    answer = get_json(v1_url(api_url, "/data/credits"), api_key=api_key)
    render(answer, as_json, lambda: _statement_lines(answer))


@data.command("payee")
@click.argument("node_key", metavar="NODE_KEY")
@_API
@_KEY
@json_option("the API's answer")
def payee(node_key: str, api_url: str, api_key: str, as_json: bool) -> None:
    """Pay your data credits to NODE_KEY, your Lightning node's public key (66 hex)."""
    body = json.dumps({"ln_node": node_key.strip().lower()}).encode()
    answer = post_json(v1_url(api_url, "/data/payee"), body, api_key=api_key)
    render(answer, as_json, lambda: _statement_lines(answer))
