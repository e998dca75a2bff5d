"""The OWM ClientApp: trains the run's model on the node's local data and signs the update.

Runs unchanged in-process (:class:`~owm_adapters.flower.grid.InProcessGrid`) and under a
Flower SuperNode. Configuration:

* node config ``partition-id`` (int): which synthetic partition is this node's local data;
  ``identity-seed-hex`` (optional, 64 hex): the node's Ed25519 seed. Without it the identity is
  derived from the partition id (:func:`simulated_identity`) — for simulations and tests only;
  a real node passes the seed from its key store (SRS-SEC-03).
* run config (all optional): ``model`` (the FL architecture, default ``tinynet``; any other
  trains through :mod:`.trainable` on ``documents-path`` and ``sub-model``), ``features``,
  ``classes``, ``per-client``, ``data-seed`` (TinyNet's blobs), ``local-epochs``, ``lr``,
  ``batch-size``.

The train reply holds ``arrays`` (the locally trained model), ``metrics`` (``num-examples``,
``train-loss``) and the signature record (:mod:`owm_adapters.flower.signing`), which signs the
update together with its ``num-examples``: the server weighs the update by that count only
when it is signed and at most what the run hands each client (SRS-SEC-05).
"""

from __future__ import annotations

import hashlib

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from owm_adapters.flower import trainable
from owm_adapters.flower.data import partition
from owm_adapters.flower.model import TinyNet, evaluate, load_record, to_record, train_local
from owm_adapters.flower.signing import sign_reply
from owm_adapters.flower.trainable import spec_from
from owm_adapters.models.architectures import TINYNET
from owm_core.identity.keys import Identity

ARRAYS_KEY = "arrays"
SIM_IDENTITY_DOMAIN = b"owm/sim-identity/v1\x00"

app = ClientApp()


def simulated_identity(partition_id: int) -> Identity:
    """The deterministic identity of simulated node ``partition_id`` (never for real nodes)."""
    seed = hashlib.sha256(SIM_IDENTITY_DOMAIN + str(partition_id).encode()).digest()
    return Identity.from_seed(seed)


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def node_identity(context: Context) -> Identity:
    """This node's signing identity (see the module docstring)."""
    seed_hex = context.node_config.get("identity-seed-hex")
    if isinstance(seed_hex, str) and seed_hex:
        return Identity.from_seed(bytes.fromhex(seed_hex))
    return simulated_identity(int(context.node_config["partition-id"]))


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train on local data from the received global model; reply with a signed update."""
    pid = int(context.node_config["partition-id"])
    config = msg.content.config_records.get("config", ConfigRecord())
    server_round = _as_int(config.get("server-round", 0))
    if trainable.model_name(context.run_config) != TINYNET:
        record, examples, loss = trainable.train(
            context.run_config, msg.content.array_records[ARRAYS_KEY], pid,
            seed=pid * 7919 + server_round,
        )
        content = RecordDict({ARRAYS_KEY: record, "metrics": MetricRecord(
            {"num-examples": examples, "train-loss": loss})})
        sign_reply(content, node_identity(context), server_round, ARRAYS_KEY)
        return Message(content=content, reply_to=msg)
    spec = spec_from(context.run_config)
    model = TinyNet(spec)
    load_record(model, msg.content.array_records[ARRAYS_KEY])
    x, y = partition(spec, pid)
    loss = train_local(
        model,
        x,
        y,
        epochs=int(context.run_config.get("local-epochs", 1)),
        lr=float(context.run_config.get("lr", 0.1)),
        batch_size=int(context.run_config.get("batch-size", 16)),
        seed=pid * 7919 + server_round,
    )
    content = RecordDict(
        {
            ARRAYS_KEY: to_record(model),
            "metrics": MetricRecord({"num-examples": len(x), "train-loss": loss}),
        }
    )
    sign_reply(content, node_identity(context), server_round, ARRAYS_KEY)
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_local(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on local data."""
    if trainable.model_name(context.run_config) != TINYNET:
        pid = int(context.node_config["partition-id"])
        trained = trainable.loaded(context.run_config, msg.content.array_records[ARRAYS_KEY])
        data = trainable.local_data(context.run_config, pid)
        acc, loss = trained.evaluate(data)
        metrics = MetricRecord({"num-examples": len(data), "eval-loss": loss, "eval-acc": acc})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
    spec = spec_from(context.run_config)
    model = TinyNet(spec)
    load_record(model, msg.content.array_records[ARRAYS_KEY])
    x, y = partition(spec, int(context.node_config["partition-id"]))
    loss, acc = evaluate(model, x, y)
    metrics = MetricRecord({"num-examples": len(x), "eval-loss": loss, "eval-acc": acc})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
