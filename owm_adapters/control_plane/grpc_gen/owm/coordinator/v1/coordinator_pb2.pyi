from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetChallengeRequest(_message.Message):
    __slots__ = ("public_key", "purpose")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    purpose: str
    def __init__(self, public_key: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("public_key", "purpose", "nonce", "issued_at", "expires_at", "coordinator_signature")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    purpose: str
    nonce: str
    issued_at: int
    expires_at: int
    coordinator_signature: bytes
    def __init__(self, public_key: _Optional[str] = ..., purpose: _Optional[str] = ..., nonce: _Optional[str] = ..., issued_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("public_key", "challenge_nonce", "signature", "manifest_envelope", "ln_node_uri", "onion_address", "ln_signature")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    LN_NODE_URI_FIELD_NUMBER: _ClassVar[int]
    ONION_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LN_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    challenge_nonce: str
    signature: str
    manifest_envelope: bytes
    ln_node_uri: str
    onion_address: str
    ln_signature: str
    def __init__(self, public_key: _Optional[str] = ..., challenge_nonce: _Optional[str] = ..., signature: _Optional[str] = ..., manifest_envelope: _Optional[bytes] = ..., ln_node_uri: _Optional[str] = ..., onion_address: _Optional[str] = ..., ln_signature: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("node_id", "tier", "stake_status", "required_sats", "capacity_sat", "coordinator_signature")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    STAKE_STATUS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SATS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_SAT_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    tier: str
    stake_status: str
    required_sats: int
    capacity_sat: int
    coordinator_signature: bytes
    def __init__(self, node_id: _Optional[str] = ..., tier: _Optional[str] = ..., stake_status: _Optional[str] = ..., required_sats: _Optional[int] = ..., capacity_sat: _Optional[int] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("heartbeat_envelope", "manifest_envelope")
    HEARTBEAT_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    heartbeat_envelope: bytes
    manifest_envelope: bytes
    def __init__(self, heartbeat_envelope: _Optional[bytes] = ..., manifest_envelope: _Optional[bytes] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("node_id", "status", "coordinator_signature")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    status: str
    coordinator_signature: bytes
    def __init__(self, node_id: _Optional[str] = ..., status: _Optional[str] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class HeartbeatBatch(_message.Message):
    __slots__ = ("heartbeat_envelopes",)
    HEARTBEAT_ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    heartbeat_envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, heartbeat_envelopes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class HeartbeatStreamSummary(_message.Message):
    __slots__ = ("accepted", "rejected", "errors")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskStreamRequest(_message.Message):
    __slots__ = ("public_key", "challenge_nonce", "signature", "capabilities", "ask_msat")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ASK_MSAT_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    challenge_nonce: str
    signature: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    ask_msat: int
    def __init__(self, public_key: _Optional[str] = ..., challenge_nonce: _Optional[str] = ..., signature: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., ask_msat: _Optional[int] = ...) -> None: ...

class TaskAssignment(_message.Message):
    __slots__ = ("task_id", "task_type", "input_schema_id", "input_schema_version", "price_msat", "deadline_at", "input", "assigned_at_ms", "coordinator_signature", "model_version")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRICE_MSAT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_AT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_type: str
    input_schema_id: str
    input_schema_version: int
    price_msat: int
    deadline_at: int
    input: bytes
    assigned_at_ms: int
    coordinator_signature: bytes
    model_version: str
    def __init__(self, task_id: _Optional[str] = ..., task_type: _Optional[str] = ..., input_schema_id: _Optional[str] = ..., input_schema_version: _Optional[int] = ..., price_msat: _Optional[int] = ..., deadline_at: _Optional[int] = ..., input: _Optional[bytes] = ..., assigned_at_ms: _Optional[int] = ..., coordinator_signature: _Optional[bytes] = ..., model_version: _Optional[str] = ...) -> None: ...

class SubmitTaskRequest(_message.Message):
    __slots__ = ("task_id", "task_type", "input_schema_id", "input_schema_version", "min_tier", "min_vram_mb", "min_ram_mb", "gpu_required", "max_price_msat", "input", "submitter_envelope")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    MIN_TIER_FIELD_NUMBER: _ClassVar[int]
    MIN_VRAM_MB_FIELD_NUMBER: _ClassVar[int]
    MIN_RAM_MB_FIELD_NUMBER: _ClassVar[int]
    GPU_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_MSAT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_type: str
    input_schema_id: str
    input_schema_version: int
    min_tier: str
    min_vram_mb: int
    min_ram_mb: int
    gpu_required: bool
    max_price_msat: int
    input: bytes
    submitter_envelope: bytes
    def __init__(self, task_id: _Optional[str] = ..., task_type: _Optional[str] = ..., input_schema_id: _Optional[str] = ..., input_schema_version: _Optional[int] = ..., min_tier: _Optional[str] = ..., min_vram_mb: _Optional[int] = ..., min_ram_mb: _Optional[int] = ..., gpu_required: _Optional[bool] = ..., max_price_msat: _Optional[int] = ..., input: _Optional[bytes] = ..., submitter_envelope: _Optional[bytes] = ...) -> None: ...

class FundBalanceRequest(_message.Message):
    __slots__ = ("request_envelope",)
    REQUEST_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    request_envelope: bytes
    def __init__(self, request_envelope: _Optional[bytes] = ...) -> None: ...

class FundBalanceResponse(_message.Message):
    __slots__ = ("public_key", "available_msat", "funded_msat", "escrowed_msat", "refunded_msat", "bolt11", "payment_hash", "expires_at")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MSAT_FIELD_NUMBER: _ClassVar[int]
    FUNDED_MSAT_FIELD_NUMBER: _ClassVar[int]
    ESCROWED_MSAT_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_MSAT_FIELD_NUMBER: _ClassVar[int]
    BOLT11_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_HASH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    available_msat: int
    funded_msat: int
    escrowed_msat: int
    refunded_msat: int
    bolt11: str
    payment_hash: str
    expires_at: int
    def __init__(self, public_key: _Optional[str] = ..., available_msat: _Optional[int] = ..., funded_msat: _Optional[int] = ..., escrowed_msat: _Optional[int] = ..., refunded_msat: _Optional[int] = ..., bolt11: _Optional[str] = ..., payment_hash: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class GetTaskOutputRequest(_message.Message):
    __slots__ = ("request_envelope",)
    REQUEST_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    request_envelope: bytes
    def __init__(self, request_envelope: _Optional[bytes] = ...) -> None: ...

class TaskOutput(_message.Message):
    __slots__ = ("task_id", "state", "sealed_output")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEALED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: str
    sealed_output: bytes
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[str] = ..., sealed_output: _Optional[bytes] = ...) -> None: ...

class SubmitTaskResponse(_message.Message):
    __slots__ = ("task_id", "replica_ids")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_IDS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    replica_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., replica_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CommitResultRequest(_message.Message):
    __slots__ = ("commitment_envelope",)
    COMMITMENT_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    commitment_envelope: bytes
    def __init__(self, commitment_envelope: _Optional[bytes] = ...) -> None: ...

class CommitResultResponse(_message.Message):
    __slots__ = ("task_id", "state", "reveals_open", "retry_after_ms", "coordinator_signature")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REVEALS_OPEN_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: str
    reveals_open: bool
    retry_after_ms: int
    coordinator_signature: bytes
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[str] = ..., reveals_open: _Optional[bool] = ..., retry_after_ms: _Optional[int] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class SubmitProofRequest(_message.Message):
    __slots__ = ("proof_envelope", "output", "salt")
    PROOF_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    proof_envelope: bytes
    output: bytes
    salt: bytes
    def __init__(self, proof_envelope: _Optional[bytes] = ..., output: _Optional[bytes] = ..., salt: _Optional[bytes] = ...) -> None: ...

class SubmitProofResponse(_message.Message):
    __slots__ = ("task_id", "state", "coordinator_signature")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: str
    coordinator_signature: bytes
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[str] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("public_key", "challenge_nonce", "signature")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    challenge_nonce: str
    signature: str
    def __init__(self, public_key: _Optional[str] = ..., challenge_nonce: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ("node_id", "stake_status", "coordinator_signature")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STAKE_STATUS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    stake_status: str
    coordinator_signature: bytes
    def __init__(self, node_id: _Optional[str] = ..., stake_status: _Optional[str] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class StakeStatusRequest(_message.Message):
    __slots__ = ("node_id", "public_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    public_key: str
    def __init__(self, node_id: _Optional[str] = ..., public_key: _Optional[str] = ...) -> None: ...

class StakeStatusResponse(_message.Message):
    __slots__ = ("node_id", "status", "tier", "required_sats", "capacity_sat", "bonus_bps", "cooldown_until", "channel_point", "coordinator_signature")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SATS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_SAT_FIELD_NUMBER: _ClassVar[int]
    BONUS_BPS_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_UNTIL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_POINT_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    status: str
    tier: str
    required_sats: int
    capacity_sat: int
    bonus_bps: int
    cooldown_until: int
    channel_point: str
    coordinator_signature: bytes
    def __init__(self, node_id: _Optional[str] = ..., status: _Optional[str] = ..., tier: _Optional[str] = ..., required_sats: _Optional[int] = ..., capacity_sat: _Optional[int] = ..., bonus_bps: _Optional[int] = ..., cooldown_until: _Optional[int] = ..., channel_point: _Optional[str] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class TaskView(_message.Message):
    __slots__ = ("task_id", "replicas", "outcome", "coordinator_signature")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaView]
    outcome: str
    coordinator_signature: bytes
    def __init__(self, task_id: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaView, _Mapping]]] = ..., outcome: _Optional[str] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class ReplicaView(_message.Message):
    __slots__ = ("replica_id", "state", "node_id", "price_msat", "rejections")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MSAT_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    state: str
    node_id: str
    price_msat: int
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    def __init__(self, replica_id: _Optional[str] = ..., state: _Optional[str] = ..., node_id: _Optional[str] = ..., price_msat: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("node_id", "field", "reason", "rejected_at")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REJECTED_AT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    field: str
    reason: str
    rejected_at: int
    def __init__(self, node_id: _Optional[str] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ..., rejected_at: _Optional[int] = ...) -> None: ...

class RejectTaskRequest(_message.Message):
    __slots__ = ("rejection_envelope",)
    REJECTION_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    rejection_envelope: bytes
    def __init__(self, rejection_envelope: _Optional[bytes] = ...) -> None: ...

class RejectTaskResponse(_message.Message):
    __slots__ = ("task_id", "state", "coordinator_signature")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: str
    coordinator_signature: bytes
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[str] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class StakeTermsRequest(_message.Message):
    __slots__ = ("tier",)
    TIER_FIELD_NUMBER: _ClassVar[int]
    tier: str
    def __init__(self, tier: _Optional[str] = ...) -> None: ...

class StakeTermsResponse(_message.Message):
    __slots__ = ("treasury_node_uri", "required_sats", "min_confirmations", "coordinator_signature")
    TREASURY_NODE_URI_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SATS_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    treasury_node_uri: str
    required_sats: int
    min_confirmations: int
    coordinator_signature: bytes
    def __init__(self, treasury_node_uri: _Optional[str] = ..., required_sats: _Optional[int] = ..., min_confirmations: _Optional[int] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class PendingPayoutsRequest(_message.Message):
    __slots__ = ("query_envelope",)
    QUERY_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    query_envelope: bytes
    def __init__(self, query_envelope: _Optional[bytes] = ...) -> None: ...

class PendingPayout(_message.Message):
    __slots__ = ("payment_id", "amount_msat", "memo", "expiry_s", "requested_at", "payee_pubkey", "coordinator_signature")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MSAT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_S_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    PAYEE_PUBKEY_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    amount_msat: int
    memo: str
    expiry_s: int
    requested_at: int
    payee_pubkey: str
    coordinator_signature: bytes
    def __init__(self, payment_id: _Optional[str] = ..., amount_msat: _Optional[int] = ..., memo: _Optional[str] = ..., expiry_s: _Optional[int] = ..., requested_at: _Optional[int] = ..., payee_pubkey: _Optional[str] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class PendingPayoutsResponse(_message.Message):
    __slots__ = ("payouts", "coordinator_signature")
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payouts: _containers.RepeatedCompositeFieldContainer[PendingPayout]
    coordinator_signature: bytes
    def __init__(self, payouts: _Optional[_Iterable[_Union[PendingPayout, _Mapping]]] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...

class SubmitInvoiceRequest(_message.Message):
    __slots__ = ("invoice_envelope",)
    INVOICE_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    invoice_envelope: bytes
    def __init__(self, invoice_envelope: _Optional[bytes] = ...) -> None: ...

class SubmitInvoiceResponse(_message.Message):
    __slots__ = ("payment_id", "payment_hash", "amount_msat", "coordinator_signature")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_HASH_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MSAT_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    payment_hash: str
    amount_msat: int
    coordinator_signature: bytes
    def __init__(self, payment_id: _Optional[str] = ..., payment_hash: _Optional[str] = ..., amount_msat: _Optional[int] = ..., coordinator_signature: _Optional[bytes] = ...) -> None: ...
