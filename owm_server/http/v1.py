"""Version 1 of the public API (SRS 4.8.2): every ``/v1`` operation, parse → call → render.

No rule lives here: each handler reads its validated input from :class:`Call`, calls one
method of :class:`~owm_adapters.services.api.ApiServices` and renders the domain values it gets
back as JSON. Node registration and deregistration go through the coordinator's own use cases
(the same as gRPC). The query operations live in :mod:`owm_server.http.v1_query`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse, Response

from owm_adapters.services.api import DashboardFrame
from owm_core.coordination.network import AnonymousNode
from owm_core.coordination.registration import Registration
from owm_core.errors import InvalidValue
from owm_core.governance.contributions import AnalysisRequest, Bounty, BountyStatus
from owm_core.governance.proposals import Proposal, ProposalStatus, ProposalType
from owm_core.nodes.registry import NodeStatus
from owm_core.payments.records import RewardPayment
from owm_core.pool.stats import MinerStats, MiningPayout, PoolStats
from owm_core.provenance.releases import ModelRelease
from owm_core.stake.channel import Stake
from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, Param, Reply, Schema
from owm_server.http.problems import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA, Problem
from owm_server.http.v1_data import data_operations
from owm_server.http.v1_fl import fl_operations
from owm_server.http.v1_query import query_operations
from owm_server.http.v1_slashing import slashing_operations

# --------------------------------------------------------------------------- schemas

NODE_ID: Schema = {"type": "string", "pattern": "^n[0-9a-f]{40}$", "description": "node id"}
PUBLIC_KEY: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
HEX_SIG: Schema = {"type": "string", "pattern": "^[0-9a-f]{128}$"}
NONCE: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
RELEASE_ID: Schema = {
    "type": "string",
    "pattern": r"^[a-z0-9][a-z0-9._-]{0,63}@owm-v[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$",
    "maxLength": 130,
}
REPOSITORY: Schema = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$",
    "description": "owner/name",
}
OBJECT_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
INT: Schema = {"type": "integer"}
STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}


def obj(properties: dict[str, Schema], required: Sequence[str] | None = None) -> Schema:
    """An object schema; every property required unless listed otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
    "At most this many items (1–500).",
)

RELEASE: Schema = obj(
    {
        "id": STR,
        "version": STR,
        "sub_model": STR,
        "digest": STR,
        "parent": nullable(STR),
        "created_at": INT,
        "ots_status": {"type": "string", "enum": ["none", "pending", "confirmed", "failed"]},
        "ots_verified": BOOL,
        "ots_checked_at": INT,
        "ots_proof_url": nullable(STR),
    }
)
STAKE: Schema = obj(
    {
        "node_id": STR,
        "status": STR,
        "tier": STR,
        "required_sats": INT,
        "capacity_sat": INT,
        "bonus_bps": INT,
        "changed_at": INT,
        "channel_id": nullable(STR),
        "channel_point": nullable(STR),
        "channel_confirmations": nullable(INT),
        "next_verification_at": nullable(INT),
        "grace_until": nullable(INT),
        "cooldown_until": nullable(INT),
    }
)
PAYMENT: Schema = obj(
    {
        "payment_hash": STR,
        "task_id": STR,
        "amount_msat": INT,
        "state": STR,
        "attempts": INT,
        "created_at": INT,
        "updated_at": INT,
    }
)
PAYOUT: Schema = obj(
    {
        "paid_at": INT,
        "amount_sat": INT,
        "payment_hash": STR,
        "recipient": {"type": "string", "enum": ["miner", "treasury"]},
        "miner_id": nullable(STR),
    }
)
PROPOSAL: Schema = obj(
    {
        "proposal_id": STR,
        "author": STR,
        "title": STR,
        "description": STR,
        "type": STR,
        "implementation_plan": STR,
        "requested_sat": INT,
        "submitted_at": INT,
        "comment_deadline_at": INT,
        "status": STR,
        "accepts_comments": BOOL,
        "comments": array(obj({"author": STR, "text": STR, "at": INT})),
        "acknowledgements": INT,
        "txid": nullable(STR),
    }
)
BOUNTY: Schema = obj(
    {
        "bounty_id": STR,
        "repository": STR,
        "issue_number": INT,
        "title": STR,
        "amount_sat": INT,
        "created_by": STR,
        "created_at": INT,
        "status": STR,
    }
)
ANALYSIS: Schema = obj(
    {
        "analysis_id": STR,
        "repository": STR,
        "requested_by": STR,
        "requested_at": INT,
        "state": STR,
        "updated_at": nullable(INT),
        "result": nullable(STR),
    }
)
POOL: Schema = obj(
    {
        "hashrate_1h_hps": INT,
        "hashrate_24h_hps": INT,
        "miners_24h": INT,
        "shares_24h": INT,
        "blocks_30d": INT,
        "paid_sat_total": INT,
        "at": INT,
    }
)
MINER: Schema = obj(
    {
        "miner_id": STR,
        "hashrate_1h_hps": INT,
        "hashrate_24h_hps": INT,
        "shares_24h": INT,
        "blocks_30d": INT,
        "paid_sat": INT,
        "payouts": INT,
    }
)


def problem(description: str) -> Reply:
    return Reply(description, PROBLEM_SCHEMA, PROBLEM_MEDIA_TYPE)


# --------------------------------------------------------------------------- rendering


def json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(value, status_code=status, headers=headers)


def release_json(r: ModelRelease) -> dict[str, Any]:
    return {
        "id": r.release_id,
        "version": r.version.version,
        "sub_model": r.version.sub_model,
        "digest": r.version.digest,
        "parent": r.version.parent,
        "created_at": r.version.created_at,
        "ots_status": r.proof_status.value,
        "ots_verified": r.ots_verified,
        "ots_checked_at": r.checked_at,
        "ots_proof_url": None if r.ots_proof is None else f"/v1/model/versions/{r.release_id}/ots",
    }


def stake_json(node_id: str, s: Stake) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "status": s.status.value,
        "tier": s.tier.value,
        "required_sats": s.required_sats,
        "capacity_sat": s.capacity_sat,
        "bonus_bps": s.bonus_bps,
        "changed_at": s.changed_at,
        "channel_id": None if s.channel is None else s.channel.channel_id,
        "channel_point": None if s.channel is None else s.channel.channel_point,
        "channel_confirmations": None if s.channel is None else s.channel.confirmations,
        "next_verification_at": s.next_verification_at,
        "grace_until": s.grace_until,
        "cooldown_until": s.cooldown_until,
    }


def payment_json(p: RewardPayment) -> dict[str, Any]:
    return {
        "payment_hash": p.payment_hash,
        "task_id": p.task_id,
        "amount_msat": p.amount_msat,
        "state": p.state.value,
        "attempts": p.attempts,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def payout_json(p: MiningPayout) -> dict[str, Any]:
    return {
        "paid_at": p.paid_at,
        "amount_sat": p.amount_sat,
        "payment_hash": p.payment_hash,
        "recipient": "treasury" if p.miner_id is None else "miner",
        "miner_id": p.miner_id,
    }


def proposal_json(p: Proposal, now: int) -> dict[str, Any]:
    return {
        "proposal_id": p.proposal_id,
        "author": p.author,
        "title": p.title,
        "description": p.description,
        "type": p.type.value,
        "implementation_plan": p.implementation_plan,
        "requested_sat": p.requested_sat,
        "submitted_at": p.submitted_at,
        "comment_deadline_at": p.comment_deadline_at,
        "status": p.status.value,
        "accepts_comments": p.accepts_comments(now),
        "comments": [{"author": c.author, "text": c.text, "at": c.at} for c in p.comments],
        "acknowledgements": len(p.acknowledgements),
        "txid": p.txid,
    }


def bounty_json(b: Bounty) -> dict[str, Any]:
    return {
        "bounty_id": b.bounty_id,
        "repository": b.repository,
        "issue_number": b.issue_number,
        "title": b.title,
        "amount_sat": b.amount_sat,
        "created_by": b.created_by,
        "created_at": b.created_at,
        "status": b.status.value,
    }


def analysis_json(a: AnalysisRequest) -> dict[str, Any]:
    return {
        "analysis_id": a.analysis_id,
        "repository": a.repository,
        "requested_by": a.requested_by,
        "requested_at": a.requested_at,
        "state": a.state.value,
        "updated_at": a.updated_at,
        "result": a.result,
    }


def pool_json(p: PoolStats) -> dict[str, Any]:
    return {
        "hashrate_1h_hps": p.hashrate_1h_hps,
        "hashrate_24h_hps": p.hashrate_24h_hps,
        "miners_24h": p.miners_24h,
        "shares_24h": p.shares_24h,
        "blocks_30d": p.blocks_30d,
        "paid_sat_total": p.paid_sat_total,
        "at": p.at,
    }


def miner_json(m: MinerStats) -> dict[str, Any]:
    return {
        "miner_id": m.miner_id,
        "hashrate_1h_hps": m.hashrate_1h_hps,
        "hashrate_24h_hps": m.hashrate_24h_hps,
        "shares_24h": m.shares_24h,
        "blocks_30d": m.blocks_30d,
        "paid_sat": m.paid_sat,
        "payouts": m.payouts,
    }


def node_json(n: AnonymousNode) -> dict[str, Any]:
    return {
        "tier": n.tier.value,
        "status": n.status.value,
        "vram_mb": n.vram_mb,
        "ram_mb": n.ram_mb,
        "bandwidth_mbps": n.bandwidth_mbps,
        "reliability_ppm": n.reliability_ppm,
        "registered_at": n.registered_at,
        "total_tasks_completed": n.total_tasks_completed,
    }


def dashboard_json(frame: DashboardFrame) -> dict[str, Any]:
    """One live dashboard message (SRS-POOL-09)."""
    return {
        "type": "pool_metrics",
        "pool": pool_json(frame.pool),
        "hashrate_by_miner_1h": frame.hashrate_by_miner_1h,
        "recent_payouts": [payout_json(p) for p in frame.recent_payouts],
    }


# --------------------------------------------------------------------------- model


def list_versions(call: Call) -> Response:
    releases = call.services.releases()
    return json({"versions": [release_json(r) for r in releases]})


def get_version(call: Call) -> Response:
    return json(release_json(call.services.release(call.path["id"])))


def get_version_ots(call: Call) -> Response:
    release = call.services.release(call.path["id"])
    if release.ots_proof is None:
        raise Problem(404, "not-found", f"model version {release.release_id} is not stamped yet")
    filename = release.release_id.replace("@", "_") + ".ots"
    return Response(
        release.ots_proof,
        media_type="application/vnd.opentimestamps.ots",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --------------------------------------------------------------------------- nodes


def node_challenge(call: Call) -> Response:
    c = call.services.challenge(call.body["public_key"], call.body["purpose"])
    return json(
        {
            "public_key": c.public_key,
            "purpose": c.purpose.value,
            "nonce": c.nonce,
            "issued_at": c.issued_at,
            "expires_at": c.expires_at,
        }
    )


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidValue(field, "must be base64") from None


def register_node(call: Call) -> Response:
    body = call.body
    registration = Registration(
        public_key=body["public_key"],
        manifest_envelope=_b64(body["manifest_envelope"], "body.manifest_envelope"),
        ln_node_uri=body["ln_node_uri"],
        onion_address=body.get("onion_address") or None,
    )
    registered = call.services.register(
        registration, body["challenge_nonce"], body["signature"], call.client_ip
    )
    return json(
        {
            "node_id": registered.node.node_id,
            "tier": registered.stake.tier.value,
            "stake_status": registered.stake.status.value,
            "required_sats": registered.stake.required_sats,
            "capacity_sat": registered.stake.capacity_sat,
        },
        status=201,
    )


def deregister_node(call: Call) -> Response:
    body = call.body
    stake = call.services.deregister(
        call.path["node_id"], body["public_key"], body["challenge_nonce"], body["signature"]
    )
    return json(stake_json(call.path["node_id"], stake))


def node_status(call: Call) -> Response:
    node, status, stake = call.services.node(call.path["node_id"])
    return json(
        {
            "node_id": node.node_id,
            "status": status.value,
            "tier": node.tier.value,
            "stake_status": None if stake is None else stake.status.value,
            "registered_at": node.registered_at,
            "last_heartbeat": node.last_heartbeat,
            "reliability_ppm": node.reliability_ppm,
            "total_tasks_completed": node.total_tasks_completed,
            "total_sats_earned": node.total_sats_earned,
        }
    )


def _own_node(call: Call, node_id: str) -> None:
    caller = call.who()
    if caller.subject != node_id:
        raise Problem(403, "forbidden", "a node may read only its own earnings")


def node_earnings(call: Call) -> Response:
    node_id = call.path["node_id"]
    _own_node(call, node_id)
    node, payments = call.services.earnings(node_id, call.query.get("limit", 100))
    return json(
        {
            "node_id": node.node_id,
            "total_sats_earned": node.total_sats_earned,
            "payments": [payment_json(p) for p in payments],
        }
    )


def payments_history(call: Call) -> Response:
    node_id = call.who().subject
    node, payments = call.services.earnings(node_id, call.query.get("limit", 100))
    return json(
        {
            "node_id": node.node_id,
            "total_sats_earned": node.total_sats_earned,
            "payments": [payment_json(p) for p in payments],
        }
    )


# --------------------------------------------------------------------------- network


def network_stats(call: Call) -> Response:
    s = call.services.network_stats()
    return json(
        {
            "nodes_total": s.nodes_total,
            "by_status": s.by_status,
            "by_tier": s.by_tier,
            "staked_sat": s.staked_sat,
            "active_stakes": s.active_stakes,
            "total_tasks_completed": s.total_tasks_completed,
            "total_sats_earned": s.total_sats_earned,
            "at": s.at,
        }
    )


def network_nodes(call: Call) -> Response:
    status = call.query.get("status")
    nodes = call.services.anonymous_nodes(None if status is None else NodeStatus(status))
    return json({"nodes": [node_json(n) for n in nodes[: call.query.get("limit", 100)]]})


def slashing_log(call: Call) -> Response:
    entries = call.services.slashing_log(call.query.get("start", 0), call.query.get("limit", 100))
    return json({"entries": [e.to_dict() for e in entries]})


# --------------------------------------------------------------------------- payments


def payments_invoice(call: Call) -> Response:
    offer = call.services.offer_access()
    return json(
        {
            "invoice": offer.invoice.bolt11,
            "payment_hash": offer.invoice.payment_hash,
            "amount_msat": offer.invoice.amount_msat,
            "expires_at": offer.invoice.expires_at,
            "macaroon": base64.b64encode(offer.macaroon.serialize()).decode(),
            "valid_for_s": offer.valid_for_s,
            "www_authenticate": offer.www_authenticate,
        },
        headers={"Cache-Control": "no-store"},
    )


# --------------------------------------------------------------------------- mining


def mining_stats(call: Call) -> Response:
    return json(pool_json(call.services.pool_stats()))


def mining_node(call: Call) -> Response:
    view = call.services.miner(call.path["node_id"])
    return json(
        {**miner_json(view.stats), "recent_payouts": [payout_json(p) for p in view.payouts]}
    )


def mining_payouts(call: Call) -> Response:
    payouts = call.services.payouts(call.query.get("limit", 100))
    return json({"payouts": [payout_json(p) for p in payouts]})


def mining_dashboard(call: Call) -> Response:
    return json(dashboard_json(call.services.dashboard()))


# --------------------------------------------------------------------------- stake


def stake_requirements(call: Call) -> Response:
    r = call.services.stake_requirements()
    return json({"currency": "sat", "tiers": {"t1": r.t1_sats, "t2": r.t2_sats, "t3": r.t3_sats}})


def stake_node(call: Call) -> Response:
    node_id = call.path["node_id"]
    return json(stake_json(node_id, call.services.stake(node_id)))


# --------------------------------------------------------------------------- governance


def list_proposals(call: Call) -> Response:
    status = call.query.get("status")
    proposals = call.services.proposals(None if status is None else ProposalStatus(status))
    now = call.services.clock.now()
    return json({"proposals": [proposal_json(p, now) for p in proposals]})


def submit_proposal(call: Call) -> Response:
    body = call.body
    proposal = call.services.submit_proposal(
        call.who(),
        title=body["title"],
        description=body["description"],
        proposal_type=ProposalType(body["type"]),
        implementation_plan=body["implementation_plan"],
        requested_sat=body.get("requested_sat", 0),
    )
    return json(proposal_json(proposal, call.services.clock.now()), status=201)


def comment_proposal(call: Call) -> Response:
    proposal = call.services.comment(call.who(), call.path["id"], call.body["text"])
    return json(proposal_json(proposal, call.services.clock.now()), status=201)


# --------------------------------------------------------------------------- GitHub


def list_bounties(call: Call) -> Response:
    status = call.query.get("status", "open")
    bounties = call.services.bounties(None if status == "all" else BountyStatus(status))
    return json({"bounties": [bounty_json(b) for b in bounties]})


def create_bounty(call: Call) -> Response:
    body = call.body
    bounty = call.services.create_bounty(
        call.who(), body["repository"], body["issue_number"], body["title"], body["amount_sat"]
    )
    return json(bounty_json(bounty), status=201)


def analyze(call: Call) -> Response:
    request = call.services.request_analysis(call.who(), call.body["repository"])
    return json(
        analysis_json(request),
        status=202,
        headers={"Location": f"/v1/github/analysis/{request.analysis_id}"},
    )


def get_analysis(call: Call) -> Response:
    return json(analysis_json(call.services.analysis(call.path["id"])))


# --------------------------------------------------------------------------- the table

_NODE_PARAM = Param(
    "node_id", "path", NODE_ID, "The node's id (`n` + 40 hex).", True, convertor="node_id"
)
_NOT_FOUND = problem("No such record.")


def operations() -> list[Operation]:
    """Every v1 operation (SRS 4.8.2) plus the node challenge step of registration."""
    C, NM, N, P = Access.CLIENT, Access.NODE_MANAGEMENT, Access.NODE, Access.PUBLIC
    return [
        *query_operations(),  # owm_server/http/v1_query.py
        *slashing_operations(),  # owm_server/http/v1_slashing.py
        *data_operations(),  # owm_server/http/v1_data.py
        *fl_operations(),  # owm_server/http/v1_fl.py
        # Model & provenance
        Operation(
            "GET",
            "/model/versions",
            "listModelVersions",
            "List all model versions with OTS status",
            "model",
            C,
            list_versions,
            {200: Reply("Releases, newest first.", obj({"versions": array(RELEASE)}))},
            inline=True,
        ),
        Operation(
            "GET",
            "/model/versions/{id}",
            "getModelVersion",
            "Get specific version metadata",
            "model",
            C,
            get_version,
            {200: Reply("The release.", RELEASE), 404: _NOT_FOUND},
            params=(Param("id", "path", RELEASE_ID, "`<sub_model>@<version>`.", True),),
        ),
        Operation(
            "GET",
            "/model/versions/{id}/ots",
            "getModelVersionProof",
            "Download the OTS proof file",
            "model",
            C,
            get_version_ots,
            {
                200: Reply("The `.ots` proof.", None, "application/vnd.opentimestamps.ots"),
                404: _NOT_FOUND,
            },
            params=(Param("id", "path", RELEASE_ID, "`<sub_model>@<version>`.", True),),
        ),
        # GitHub integration
        Operation(
            "POST",
            "/github/analyze",
            "analyzeRepository",
            "Submit a repo for analysis",
            "github",
            C,
            analyze,
            {
                202: Reply(
                    "Queued; poll the analysis. It stays `queued` until the GitHub "
                    "integration exists (no result is invented).",
                    ANALYSIS,
                )
            },
            body={
                "type": "object",
                "properties": {"repository": REPOSITORY},
                "required": ["repository"],
                "additionalProperties": False,
            },
        ),
        Operation(
            "GET",
            "/github/analysis/{id}",
            "getAnalysis",
            "Get analysis results",
            "github",
            C,
            get_analysis,
            {200: Reply("The analysis.", ANALYSIS), 404: _NOT_FOUND},
            params=(Param("id", "path", OBJECT_ID, "The analysis id.", True),),
        ),
        Operation(
            "GET",
            "/github/bounties",
            "listBounties",
            "List active bounties",
            "github",
            C,
            list_bounties,
            {200: Reply("Bounties, newest first.", obj({"bounties": array(BOUNTY)}))},
            params=(
                Param(
                    "status",
                    "query",
                    {"type": "string", "enum": ["open", "paid", "cancelled", "all"]},
                    "Which bounties (default open).",
                ),
            ),
            inline=True,
        ),
        Operation(
            "POST",
            "/github/bounties",
            "createBounty",
            "Create a new bounty",
            "github",
            C,
            create_bounty,
            {201: Reply("The bounty.", BOUNTY)},
            body={
                "type": "object",
                "properties": {
                    "repository": REPOSITORY,
                    "issue_number": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "amount_sat": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 2_100_000_000_000_000,
                    },
                },
                "required": ["repository", "issue_number", "title", "amount_sat"],
                "additionalProperties": False,
            },
        ),
        # Node management
        Operation(
            "POST",
            "/nodes/challenge",
            "nodeChallenge",
            "Get a one-use challenge to sign (registration, deregistration)",
            "nodes",
            P,
            node_challenge,
            {
                200: Reply(
                    "The challenge.",
                    obj(
                        {
                            "public_key": STR,
                            "purpose": STR,
                            "nonce": STR,
                            "issued_at": INT,
                            "expires_at": INT,
                        }
                    ),
                )
            },
            body={
                "type": "object",
                "properties": {
                    "public_key": PUBLIC_KEY,
                    "purpose": {"type": "string", "enum": ["register", "deregister"]},
                },
                "required": ["public_key", "purpose"],
                "additionalProperties": False,
            },
        ),
        Operation(
            "POST",
            "/nodes/register",
            "registerNode",
            "Register a new node",
            "nodes",
            P,
            register_node,
            {
                201: Reply(
                    "Registered; stake pending or active.",
                    obj(
                        {
                            "node_id": STR,
                            "tier": STR,
                            "stake_status": STR,
                            "required_sats": INT,
                            "capacity_sat": INT,
                        }
                    ),
                ),
                401: problem("The challenge answer or manifest signature does not verify."),
                409: problem("Insufficient stake (`required_sats`), cooldown, or conflict."),
                429: problem("10 registrations per IP per hour (SRS-SEC-04)."),
            },
            body={
                "type": "object",
                "properties": {
                    "public_key": PUBLIC_KEY,
                    "challenge_nonce": NONCE,
                    "signature": HEX_SIG,
                    "manifest_envelope": {
                        "type": "string",
                        "maxLength": 200_000,
                        "description": "base64 signed manifest",
                    },
                    "ln_node_uri": {"type": "string", "maxLength": 400},
                    "onion_address": {"type": ["string", "null"], "maxLength": 62},
                },
                "required": [
                    "public_key",
                    "challenge_nonce",
                    "signature",
                    "manifest_envelope",
                    "ln_node_uri",
                ],
                "additionalProperties": False,
            },
        ),
        Operation(
            "DELETE",
            "/nodes/{node_id}",
            "deregisterNode",
            "Deregister a node",
            "nodes",
            P,
            deregister_node,
            {
                200: Reply("Deregistered (no cooldown, SRS-STAKE-08).", STAKE),
                401: problem("The challenge answer does not verify."),
                404: _NOT_FOUND,
            },
            params=(_NODE_PARAM,),
            body={
                "type": "object",
                "properties": {
                    "public_key": PUBLIC_KEY,
                    "challenge_nonce": NONCE,
                    "signature": HEX_SIG,
                },
                "required": ["public_key", "challenge_nonce", "signature"],
                "additionalProperties": False,
            },
        ),
        Operation(
            "GET",
            "/nodes/{node_id}/status",
            "nodeStatus",
            "Get node status",
            "nodes",
            NM,
            node_status,
            {
                200: Reply(
                    "The node's status.",
                    obj(
                        {
                            "node_id": STR,
                            "status": STR,
                            "tier": STR,
                            "stake_status": nullable(STR),
                            "registered_at": INT,
                            "last_heartbeat": INT,
                            "reliability_ppm": INT,
                            "total_tasks_completed": INT,
                            "total_sats_earned": INT,
                        }
                    ),
                ),
                404: _NOT_FOUND,
            },
            params=(_NODE_PARAM,),
        ),
        Operation(
            "GET",
            "/nodes/{node_id}/earnings",
            "nodeEarnings",
            "Get earnings history",
            "nodes",
            N,
            node_earnings,
            {
                200: Reply(
                    "Reward payments, newest first.",
                    obj({"node_id": STR, "total_sats_earned": INT, "payments": array(PAYMENT)}),
                ),
                403: problem("Signed by another node."),
            },
            params=(_NODE_PARAM, LIMIT),
        ),
        # Network
        Operation(
            "GET",
            "/network/stats",
            "networkStats",
            "Network-wide statistics",
            "network",
            C,
            network_stats,
            {
                200: Reply(
                    "Counts and stake.",
                    obj(
                        {
                            "nodes_total": INT,
                            "by_status": {"type": "object"},
                            "by_tier": {"type": "object"},
                            "staked_sat": INT,
                            "active_stakes": INT,
                            "total_tasks_completed": INT,
                            "total_sats_earned": INT,
                            "at": INT,
                        }
                    ),
                )
            },
            inline=True,
        ),
        Operation(
            "GET",
            "/network/nodes",
            "networkNodes",
            "List active nodes (anonymised)",
            "network",
            C,
            network_nodes,
            {
                200: Reply(
                    "Nodes without identities.",
                    obj(
                        {
                            "nodes": array(
                                obj(
                                    {
                                        "tier": STR,
                                        "status": STR,
                                        "vram_mb": INT,
                                        "ram_mb": INT,
                                        "bandwidth_mbps": INT,
                                        "reliability_ppm": INT,
                                        "registered_at": INT,
                                        "total_tasks_completed": INT,
                                    }
                                )
                            )
                        }
                    ),
                )
            },
            params=(
                Param(
                    "status",
                    "query",
                    {"type": "string", "enum": ["online", "offline", "suspended"]},
                    "Only nodes of this status.",
                ),
                LIMIT,
            ),
            inline=True,
        ),
        Operation(
            "GET",
            "/network/slashing-log",
            "slashingLog",
            "Public immutable slashing event log (SRS-STAKE-06)",
            "network",
            C,
            slashing_log,
            {
                200: Reply(
                    "Entries in index order, hash-chained and signed.",
                    obj({"entries": array({"type": "object"})}),
                )
            },
            params=(
                Param(
                    "start",
                    "query",
                    {"type": "integer", "minimum": 0, "maximum": 2**31},
                    "First index.",
                ),
                LIMIT,
            ),
            inline=True,
        ),
        # Payments
        Operation(
            "GET",
            "/payments/invoice",
            "paymentsInvoice",
            "Generate a Lightning invoice for 24 h of API access (L402)",
            "payments",
            P,
            payments_invoice,
            {
                200: Reply(
                    "Pay `invoice`, then send `Authorization: L402 <macaroon>:<preimage>`.",
                    obj(
                        {
                            "invoice": STR,
                            "payment_hash": STR,
                            "amount_msat": INT,
                            "expires_at": INT,
                            "macaroon": STR,
                            "valid_for_s": INT,
                            "www_authenticate": STR,
                        }
                    ),
                )
            },
        ),
        Operation(
            "GET",
            "/payments/history",
            "paymentsHistory",
            "Node operator earnings history (SRS-LN-10)",
            "payments",
            N,
            payments_history,
            {
                200: Reply(
                    "The signing node's payments.",
                    obj({"node_id": STR, "total_sats_earned": INT, "payments": array(PAYMENT)}),
                )
            },
            params=(LIMIT,),
        ),
        # Mining pool
        Operation(
            "GET",
            "/mining/stats",
            "miningStats",
            "Pool-wide hashrate, miners, blocks found",
            "mining",
            C,
            mining_stats,
            {200: Reply("Pool statistics.", POOL)},
            inline=True,
        ),
        Operation(
            "GET",
            "/mining/nodes/{node_id}",
            "miningNode",
            "Node's mining stats and earnings",
            "mining",
            NM,
            mining_node,
            {
                200: Reply(
                    "The miner's statistics.",
                    {
                        **MINER,
                        "properties": {**MINER["properties"], "recent_payouts": array(PAYOUT)},
                    },
                ),
                404: _NOT_FOUND,
            },
            params=(_NODE_PARAM,),
        ),
        Operation(
            "GET",
            "/mining/payouts",
            "miningPayouts",
            "Recent payout history (public)",
            "mining",
            C,
            mining_payouts,
            {200: Reply("Payouts, newest first.", obj({"payouts": array(PAYOUT)}))},
            params=(LIMIT,),
            inline=True,
        ),
        Operation(
            "GET",
            "/mining/dashboard",
            "miningDashboard",
            "Live pool metrics: one frame here; a WebSocket upgrade streams them",
            "mining",
            C,
            mining_dashboard,
            {
                200: Reply(
                    "One dashboard frame (the WebSocket sends the same shape).",
                    obj(
                        {
                            "type": STR,
                            "pool": POOL,
                            "hashrate_by_miner_1h": {"type": "object"},
                            "recent_payouts": array(PAYOUT),
                        }
                    ),
                )
            },
            inline=True,
        ),
        # Stake
        Operation(
            "GET",
            "/stake/requirements",
            "stakeRequirements",
            "Tier stake minimums",
            "stake",
            C,
            stake_requirements,
            {
                200: Reply(
                    "Minimum channel capacity per tier.",
                    obj({"currency": STR, "tiers": obj({"t1": INT, "t2": INT, "t3": INT})}),
                )
            },
            inline=True,
        ),
        Operation(
            "GET",
            "/stake/nodes/{node_id}",
            "stakeNode",
            "Node stake status and channel info",
            "stake",
            NM,
            stake_node,
            {200: Reply("The stake record.", STAKE), 404: _NOT_FOUND},
            params=(_NODE_PARAM,),
        ),
        # Governance
        Operation(
            "GET",
            "/governance/proposals",
            "listProposals",
            "List governance proposals",
            "governance",
            C,
            list_proposals,
            {200: Reply("Proposals, newest first.", obj({"proposals": array(PROPOSAL)}))},
            params=(
                Param(
                    "status",
                    "query",
                    {"type": "string", "enum": [s.value for s in ProposalStatus]},
                    "Only this status.",
                ),
            ),
            inline=True,
        ),
        Operation(
            "POST",
            "/governance/proposals",
            "submitProposal",
            "Submit a new proposal (authenticated)",
            "governance",
            C,
            submit_proposal,
            {201: Reply("The proposal, open for comments.", PROPOSAL)},
            body={
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "description": {"type": "string", "minLength": 1, "maxLength": 50_000},
                    "type": {"type": "string", "enum": [t.value for t in ProposalType]},
                    "implementation_plan": {"type": "string", "minLength": 1, "maxLength": 50_000},
                    "requested_sat": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 2_100_000_000_000_000,
                    },
                },
                "required": ["title", "description", "type", "implementation_plan"],
                "additionalProperties": False,
            },
        ),
        Operation(
            "POST",
            "/governance/proposals/{id}/comment",
            "commentProposal",
            "Comment on a proposal",
            "governance",
            C,
            comment_proposal,
            {
                201: Reply("The proposal with the comment.", PROPOSAL),
                404: _NOT_FOUND,
                409: problem("The comment period is over (`policy-violation`)."),
            },
            params=(
                Param(
                    "id",
                    "path",
                    {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
                    "The proposal id.",
                    True,
                ),
            ),
            body={
                "type": "object",
                "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 20_000}},
                "required": ["text"],
                "additionalProperties": False,
            },
        ),
    ]
