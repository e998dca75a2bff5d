"""mTLS on a real grpcio server: identity-bound ECDSA certificates, client auth, pinning."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import attrs
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from owm_adapters.control_plane.tls import (
    BINDING_OID,
    SERVER_NAME,
    PeerIdentities,
    PinMismatch,
    TlsCredentials,
    certificate_binding,
    channel_options,
    fetch_server_certificate,
    fingerprint_of,
    issue_certificate,
    issue_node_certificate,
    node_issuer,
    pinned_channel_credentials,
    server_credentials,
    verify_peer_certificate,
)
from owm_core.errors import InvalidValue, PolicyViolation, SignatureInvalid
from owm_core.identity.keys import Identity
from owm_core.identity.tls_binding import BINDING_BYTES, bind_tls_key

NOW = int(time.time())  # TLS stacks check validity against the real clock
COORDINATOR = Identity.from_seed(b"c" * 32)
NODE = Identity.from_seed(b"n" * 32)
IMPOSTOR = Identity.from_seed(b"i" * 32)
METHOD = "/owm.test.Echo/Ping"


def forged_certificate(claimed: Identity, signer: Identity) -> TlsCredentials:
    """A certificate naming ``claimed``'s node id whose TLS key ``signer`` vouched for, issued
    by the public node issuer (so the TLS layer accepts it: only the binding can refuse it)."""
    issuer = node_issuer()
    issuer_key = serialization.load_pem_private_key(issuer.private_key_pem, password=None)
    issuer_name = x509.load_pem_x509_certificate(issuer.certificate_pem).subject
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    binding = bytes([0x04, BINDING_BYTES]) + bind_tls_key(signer, spki).to_bytes()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, claimed.node_id),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "forged"),
        ]
    )
    start = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(minutes=5))
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(BINDING_OID, binding), critical=False)
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return TlsCredentials(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate.public_bytes(serialization.Encoding.PEM),
    )


@attrs.frozen
class Coordinator:
    address: str
    port: int
    credentials: TlsCredentials


@pytest.fixture(scope="module")
def coordinator_tls() -> TlsCredentials:
    return issue_certificate(COORDINATOR, NOW, dns_names=[SERVER_NAME])


@pytest.fixture(scope="module")
def node_tls() -> TlsCredentials:
    return issue_node_certificate(NODE, NOW)


@pytest.fixture(scope="module")
def impostor_tls() -> TlsCredentials:
    return forged_certificate(NODE, IMPOSTOR)


@pytest.fixture(scope="module")
def coordinator(coordinator_tls: TlsCredentials) -> Iterator[Coordinator]:
    registered = {NODE.node_id: NODE.public_key_hex}

    def ping(request: bytes, context: Any) -> bytes:
        auth = context.auth_context()
        pem = auth["x509_pem_cert"][0]
        common_name = auth["x509_common_name"][0].decode()
        try:
            node_id = verify_peer_certificate(pem, registered[common_name])
        except (KeyError, SignatureInvalid):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "certificate not bound to the node")
        return b"pong " + node_id.encode() + b" " + request

    handler = grpc.method_handlers_generic_handler(
        "owm.test.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(ping)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    # Any certificate of the public node issuer passes the TLS layer: the binding check is
    # what tells the impostor apart.
    credentials = server_credentials(coordinator_tls)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield Coordinator(f"127.0.0.1:{port}", port, coordinator_tls)
    finally:
        server.stop(0)


def call(address: str, credentials: grpc.ChannelCredentials) -> bytes:
    with grpc.secure_channel(address, credentials, options=channel_options()) as channel:
        reply: bytes = channel.unary_unary(METHOD)(b"hi", timeout=5)
        return reply


def test_a_node_with_its_bound_certificate_and_the_right_pin_is_served(
    coordinator: Coordinator, node_tls: TlsCredentials
) -> None:
    served = fetch_server_certificate("127.0.0.1", coordinator.port)
    credentials = pinned_channel_credentials(served, coordinator.credentials.fingerprint, node_tls)
    assert call(coordinator.address, credentials) == f"pong {NODE.node_id} hi".encode()
    # Presenting the node's certificate, the look at the server's completes the handshake.
    with_client = fetch_server_certificate("127.0.0.1", coordinator.port, client=node_tls)
    pin = coordinator.credentials.fingerprint
    assert fingerprint_of(with_client) == fingerprint_of(served) == pin


def test_a_client_without_a_certificate_is_refused(coordinator: Coordinator) -> None:
    anonymous = grpc.ssl_channel_credentials(coordinator.credentials.certificate_pem)
    with pytest.raises(grpc.RpcError) as err:
        call(coordinator.address, anonymous)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_client_is_refused(coordinator: Coordinator) -> None:
    with grpc.insecure_channel(coordinator.address) as channel, pytest.raises(grpc.RpcError):
        channel.unary_unary(METHOD)(b"hi", timeout=5)


def test_a_certificate_vouched_for_by_another_identity_is_refused(
    coordinator: Coordinator, impostor_tls: TlsCredentials
) -> None:
    with pytest.raises(SignatureInvalid):
        verify_peer_certificate(impostor_tls.certificate_pem, NODE.public_key_hex)
    credentials = pinned_channel_credentials(
        coordinator.credentials.certificate_pem, coordinator.credentials.fingerprint, impostor_tls
    )
    with pytest.raises(grpc.RpcError) as err:
        call(coordinator.address, credentials)
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_a_node_pinning_another_coordinator_refuses_this_one(
    coordinator: Coordinator, node_tls: TlsCredentials
) -> None:
    other = issue_certificate(Identity.from_seed(b"o" * 32), NOW, dns_names=[SERVER_NAME])
    served = fetch_server_certificate("127.0.0.1", coordinator.port)
    with pytest.raises(PinMismatch) as refused:
        pinned_channel_credentials(served, other.fingerprint, node_tls)
    assert isinstance(refused.value, PolicyViolation)
    message = refused.value.message
    assert other.fingerprint in message and coordinator.credentials.fingerprint in message
    assert "PRIVATE" not in message
    # Trusting the other certificate directly, the handshake itself fails.
    trusting_other = grpc.ssl_channel_credentials(
        other.certificate_pem, node_tls.private_key_pem, node_tls.certificate_pem
    )
    with pytest.raises(grpc.RpcError) as err:
        call(coordinator.address, trusting_other)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_certificates_are_ecdsa_p256_bound_to_the_node_id(node_tls: TlsCredentials) -> None:
    certificate = x509.load_pem_x509_certificate(node_tls.certificate_pem)
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    common_name, binding, _ = certificate_binding(node_tls.certificate_pem)
    assert common_name == NODE.node_id and binding.public_key_hex == NODE.public_key_hex
    assert verify_peer_certificate(node_tls.certificate_pem, NODE.public_key_hex) == NODE.node_id
    assert fingerprint_of(node_tls.certificate_pem) == node_tls.fingerprint
    assert "PRIVATE" not in repr(node_tls)


def test_a_certificate_without_a_binding_or_not_pem_is_refused(
    coordinator_tls: TlsCredentials,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NODE.node_id)])
    start = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    bare = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(SignatureInvalid):
        verify_peer_certificate(bare.public_bytes(serialization.Encoding.PEM), NODE.public_key_hex)
    with pytest.raises(InvalidValue):
        verify_peer_certificate(b"not a certificate", NODE.public_key_hex)
    with pytest.raises(SignatureInvalid):
        # The coordinator's own certificate is bound to the coordinator, not to the node.
        verify_peer_certificate(coordinator_tls.certificate_pem, NODE.public_key_hex)


def test_grpcio_refuses_an_ed25519_server_certificate_which_is_why_tls_keys_are_ecdsa() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed25519")])
    start = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start - datetime.timedelta(minutes=5))
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .sign(key, None)
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, pem)]))
    server.start()
    try:
        with pytest.raises(grpc.RpcError) as err:
            call(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(pem))
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_a_self_signed_node_certificate_is_refused_by_the_tls_layer(
    coordinator: Coordinator,
) -> None:
    self_signed = issue_certificate(NODE, NOW)
    credentials = pinned_channel_credentials(
        coordinator.credentials.certificate_pem, coordinator.credentials.fingerprint, self_signed
    )
    with pytest.raises(grpc.RpcError) as err:
        call(coordinator.address, credentials)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_peer_identities_name_the_binding_key_and_refuse_another_one(
    node_tls: TlsCredentials, impostor_tls: TlsCredentials
) -> None:
    peers = PeerIdentities(capacity=1)
    assert peers.public_key_of(node_tls.certificate_pem) == NODE.public_key_hex
    peers.require(node_tls.certificate_pem, NODE.public_key_hex)  # cached now
    with pytest.raises(SignatureInvalid, match="another identity"):
        peers.require(node_tls.certificate_pem, IMPOSTOR.public_key_hex)
    with pytest.raises(SignatureInvalid):
        peers.require(impostor_tls.certificate_pem, NODE.public_key_hex)
    with pytest.raises(SignatureInvalid, match="no TLS client certificate"):
        peers.require(None, NODE.public_key_hex)
