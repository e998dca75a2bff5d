"""The model and provenance endpoints of v1 (SRS-API-01, SRS-NODE-10): releases and their proofs.

* ``GET /v1/model/versions`` — every release, newest first, with its OpenTimestamps status;
* ``GET /v1/model/versions/{id}`` — one release;
* ``GET /v1/model/versions/{id}/ots`` — its ``.ots`` proof file (404 until it is stamped).

The weights of a version (``…/weights``) are the FL rounds' output: :mod:`owm_server.http.v1.fl`.
No rule lives here: parse, call the service, render.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from owm_core.provenance.releases import ModelRelease
from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, Reply, Schema, Tag
from owm_server.http.problems import Problem
from owm_server.http.v1.render import json
from owm_server.http.v1.schemas import (
    BOOL,
    INT,
    NOT_FOUND,
    RELEASE_PARAM,
    STR,
    array,
    nullable,
    obj,
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
        "ots_chain": STR,
        "ots_checked_at": INT,
        "ots_proof_url": nullable(STR),
    }
)


def release_json(r: ModelRelease, chain: str) -> dict[str, Any]:
    """A release as the API publishes it; ``chain``: what its proof is checked against."""
    return {
        "id": r.release_id,
        "version": r.version.version,
        "sub_model": r.version.sub_model,
        "digest": r.version.digest,
        "parent": r.version.parent,
        "created_at": r.version.created_at,
        "ots_status": r.proof_status.value,
        "ots_verified": r.ots_verified,
        "ots_chain": chain,
        "ots_checked_at": r.checked_at,
        "ots_proof_url": None if r.ots_proof is None else f"/v1/model/versions/{r.release_id}/ots",
    }


def list_versions(call: Call) -> Response:
    releases = call.services.releases.releases()
    chain = call.services.releases.chain
    return json({"versions": [release_json(r, chain) for r in releases]})


def get_version(call: Call) -> Response:
    releases = call.services.releases
    return json(release_json(releases.release(call.path["id"]), releases.chain))


def get_version_ots(call: Call) -> Response:
    release = call.services.releases.release(call.path["id"])
    if release.ots_proof is None:
        raise Problem(404, "not-found", f"model version {release.release_id} is not stamped yet")
    filename = release.release_id.replace("@", "_") + ".ots"
    return Response(
        release.ots_proof,
        media_type="application/vnd.opentimestamps.ots",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def operations() -> list[Operation]:
    """List releases, read one, download its proof."""
    model = Tag("model")
    return [
        model(
            "GET", "/model/versions", "listModelVersions",
            "List all model versions with OTS status", Access.CLIENT, list_versions,
            {200: Reply("Releases, newest first.", obj({"versions": array(RELEASE)}))}, inline=True,
        ),
        model(
            "GET", "/model/versions/{id}", "getModelVersion", "Get specific version metadata",
            Access.CLIENT, get_version, {200: Reply("The release.", RELEASE), 404: NOT_FOUND},
            params=(RELEASE_PARAM,),
        ),
        model(
            "GET", "/model/versions/{id}/ots", "getModelVersionProof",
            "Download the OTS proof file", Access.CLIENT, get_version_ots,
            {
                200: Reply("The `.ots` proof.", None, "application/vnd.opentimestamps.ots"),
                404: NOT_FOUND,
            },
            params=(RELEASE_PARAM,),
        ),
    ]
