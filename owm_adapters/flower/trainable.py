"""Flower's engines on any FL architecture: the model the coordinator's rounds train, through
the :class:`~owm_core.ports.fl_model.ModelArchitecture` port (SRS-COORD-03).

The run config's ``model`` names the architecture (default ``tinynet``, whose historical path
with a configurable blob task stays in :mod:`.clientapp`). For any other architecture
(``minilm-lora``: a sub-model's reader adapter) a client:

* reads the documents of the owm-dataset/1 file at ``documents-path`` (a node's contributed
  data; ``owm sim fl`` passes the shipped dataset of ``sub-model``);
* builds its local data as a coordinator round would for round ``partition-id``
  (:meth:`~owm_core.ports.fl_model.ModelArchitecture.round_data`: for the reader, its shard of
  training pairs), so clients train different shards;
* starts from the received arrays and fits with the run config's ``local-epochs``, ``lr`` and
  ``batch-size``.

The server scores each global model on the architecture's held-out set of the same documents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord

from owm_adapters.models.architectures import TINYNET, architecture
from owm_adapters.models.blobs import BlobSpec
from owm_core.fl.updates import DEFAULT_MAX_EXAMPLES
from owm_core.knowledge.datasets import Document, parse_dataset
from owm_core.ports.fl_model import ModelArchitecture, TrainableModel

RunConfig = Mapping[str, Any]
DEFAULT_SUB_MODEL = "owm-geo"
PARTITIONS = 1_000_000


def spec_from(run_config: dict[str, bool | float | int | str]) -> BlobSpec:
    """The synthetic task described by the run config (defaults from :class:`BlobSpec`)."""
    d = BlobSpec()
    return BlobSpec(
        features=int(run_config.get("features", d.features)),
        classes=int(run_config.get("classes", d.classes)),
        per_client=int(run_config.get("per-client", d.per_client)),
        seed=int(run_config.get("data-seed", d.seed)),
    )


def max_examples(run_config: RunConfig) -> int:
    """The most examples a client's update may claim, the bound the server weighs it under
    (SRS-SEC-05): for TinyNet the size of the blob partition each client is handed
    (``per-client``: an honest client reports exactly that); for any other architecture,
    whose shards the server does not derive per client, the run config's ``max-examples``
    (default :data:`~owm_core.fl.updates.DEFAULT_MAX_EXAMPLES`)."""
    if model_name(run_config) == TINYNET:
        return spec_from(dict(run_config)).per_client
    return int(run_config.get("max-examples") or DEFAULT_MAX_EXAMPLES)


def model_name(run_config: RunConfig) -> str:
    """The run config's architecture (``tinynet`` unless ``model`` says otherwise)."""
    return str(run_config.get("model") or TINYNET)


def arch_of(run_config: RunConfig) -> ModelArchitecture:
    """The architecture the run trains."""
    return architecture(model_name(run_config))


def sub_model_of(run_config: RunConfig) -> str:
    """Which sub-model's genesis the run starts from."""
    return str(run_config.get("sub-model") or DEFAULT_SUB_MODEL)


def documents_of(run_config: RunConfig) -> tuple[Document, ...]:
    """The documents of the dataset file at ``documents-path``; ValueError without one."""
    path = str(run_config.get("documents-path") or "")
    if not path:
        raise ValueError(f"run config: {model_name(run_config)} needs documents-path "
                         "(an owm-dataset/1 file)")
    return parse_dataset(Path(path).read_bytes()).documents


def initial_record(run_config: RunConfig) -> ArrayRecord:
    """The genesis arrays of the run's sub-model."""
    return ArrayRecord(arch_of(run_config).genesis(sub_model_of(run_config)).parameters())


def loaded(run_config: RunConfig, record: ArrayRecord) -> TrainableModel:
    """A model of the run's architecture holding ``record``'s arrays."""
    model = arch_of(run_config).genesis(sub_model_of(run_config))
    model.set_parameters(record.to_numpy_ndarrays())
    return model


def local_data(run_config: RunConfig, partition_id: int) -> Any:
    """Client ``partition_id``'s training data (module docstring)."""
    arch = arch_of(run_config)
    fields = arch.round_data(partition_id, PARTITIONS, documents_of(run_config))
    return arch.local_data({"sub_model": sub_model_of(run_config), **fields})


def train(
    run_config: RunConfig, record: ArrayRecord, partition_id: int, seed: int
) -> tuple[ArrayRecord, int, float]:
    """One local round from ``record``: ``(trained arrays, examples, loss)``."""
    model = loaded(run_config, record)
    examples, loss = model.fit(
        local_data(run_config, partition_id),
        epochs=int(run_config.get("local-epochs", 1)),
        lr=float(run_config.get("lr", 0.1)),
        batch_size=int(run_config.get("batch-size", 16)),
        seed=seed,
    )
    return ArrayRecord(model.parameters()), examples, loss


class CentralEvaluation:
    """The server's score of a global model on the held-out set (built once)."""

    def __init__(self, run_config: RunConfig) -> None:
        self.run_config = dict(run_config)
        self.holdout = arch_of(run_config).holdout(documents_of(run_config))

    def __call__(self, record: ArrayRecord) -> tuple[float, float]:
        """``(loss, accuracy)`` of ``record``; a model the architecture refuses (non-finite
        values) scores ``(inf, 0)``."""
        try:
            model = loaded(self.run_config, record)
        except ValueError:
            return float("inf"), 0.0
        accuracy, loss = model.evaluate(self.holdout)
        return loss, accuracy


def central_scoring(
    cfg: dict[str, bool | float | int | str], seed: int
) -> tuple[Callable[[ArrayRecord], tuple[float, float]], ArrayRecord]:
    """The server's ``(loss, accuracy)`` scorer and the initial arrays of the run's model:
    TinyNet on its blobs (seeded by ``seed``), any other architecture as above."""
    if model_name(cfg) != TINYNET:
        return CentralEvaluation(cfg), initial_record(cfg)
    from owm_adapters.flower.model import evaluate, initial_model, load_record, to_record
    from owm_adapters.models.blobs import holdout

    spec = spec_from(cfg)
    model = initial_model(spec, seed)
    x, y = holdout(spec)

    def score(arrays: ArrayRecord) -> tuple[float, float]:
        load_record(model, arrays)
        return evaluate(model, x, y)

    return score, to_record(initial_model(spec, seed))
