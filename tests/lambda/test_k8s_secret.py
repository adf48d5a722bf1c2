"""The Secret-copying handler against a local HTTPS server standing in for the EKS API (real TLS with a
CA the handler is given, real HTTP requests), Secrets Manager from moto, DescribeCluster from a Stubber."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws

from tests.support.handlers import load_handler

TOKEN_VALUE = "s3cr3tT0kenValueThatMustNeverBeLogged0123456789abcdefghijklmnop"
CLUSTER = "ray-hyperpod-eks"


def _self_signed(directory: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file, base64.b64encode(pem).decode()


class FakeApiServer(http.server.ThreadingHTTPServer):
    """Secrets in memory, answered as the API server does: POST 409 on a duplicate, PUT, DELETE."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secrets: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization header


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeApiServer

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any] | None:
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def do_POST(self) -> None:
        body = self._record()
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        if key in self.server.secrets:
            return self._reply(409)
        self.server.secrets[key] = body
        return self._reply(201, body)

    def do_PUT(self) -> None:
        body = self._record()
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        self.server.secrets[key] = body
        self._reply(200, body)

    def do_DELETE(self) -> None:
        self._record()
        parts = urllib.parse.urlparse(self.path).path.split("/")
        key = f"{parts[4]}/{parts[6]}"
        if self.server.secrets.pop(key, None) is None:
            return self._reply(404)
        return self._reply(200)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApiServer, str]]:
    cert, key, ca_data = _self_signed(tmp_path)
    server = FakeApiServer()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, ca_data
    server.shutdown()


@pytest.fixture
def handler(aws_env, api, monkeypatch):
    server, ca_data = api
    module = load_handler("k8s_secret")
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        arn = secrets.create_secret(Name="gcs-token", SecretString=TOKEN_VALUE)["ARN"]
        eks = boto3.client("eks", region_name="us-east-1")
        clients = {"secretsmanager": secrets, "eks": eks}
        monkeypatch.setattr(module, "_client", lambda service: clients[service])
        with Stubber(eks) as stubber:
            description = {
                "cluster": {
                    "name": CLUSTER,
                    "endpoint": f"https://localhost:{server.server_address[1]}",
                    "certificateAuthority": {"data": ca_data},
                }
            }
            for _ in range(4):
                stubber.add_response("describe_cluster", description, {"name": CLUSTER})
            yield module, server, arn


def event(request_type: str, arn: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "RequestId": "8a6b1e0c-5e1f-4b7e-9d51-2d3f0a1b2c3d",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/ray-hyperpod-ray/1a2b3c4d",
        "LogicalResourceId": "GcsStoreSecretResourceA1B2C3D4",
        "ResourceType": "Custom::KubernetesSecretFromSecretsManager",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x",
            "ClusterName": CLUSTER,
            "SecretArn": arn,
            "Namespace": "ray",
            "Name": "ray-cluster-gcs-store",
            "Key": "password",
        },
        **extra,
    }


def test_create_writes_the_secret_value_and_logs_nothing_of_it(handler, capsys):
    module, server, arn = handler
    result = module.on_event(event("Create", arn))
    assert result == {"PhysicalResourceId": "ray/ray-cluster-gcs-store"}
    stored = server.secrets["ray/ray-cluster-gcs-store"]
    assert base64.b64decode(stored["data"]["password"]).decode() == TOKEN_VALUE
    assert stored["type"] == "Opaque"
    method, path, auth = server.requests[0]
    assert (method, path) == ("POST", "/api/v1/namespaces/ray/secrets")
    assert auth.startswith("Bearer k8s-aws-v1.")
    logged = capsys.readouterr().out
    assert TOKEN_VALUE not in logged
    assert base64.b64encode(TOKEN_VALUE.encode()).decode() not in logged
    assert '"result": "created"' in logged


def test_update_replaces_an_existing_secret(handler):
    module, server, arn = handler
    module.on_event(event("Create", arn))
    server.secrets["ray/ray-cluster-gcs-store"]["data"]["password"] = "c3RhbGU="
    module.on_event(event("Update", arn, PhysicalResourceId="ray/ray-cluster-gcs-store"))
    assert [m for m, _, _ in server.requests] == ["POST", "POST", "PUT"]
    stored = server.secrets["ray/ray-cluster-gcs-store"]
    assert base64.b64decode(stored["data"]["password"]).decode() == TOKEN_VALUE


def test_delete_removes_the_secret_and_tolerates_one_already_gone(handler, capsys):
    module, server, arn = handler
    module.on_event(event("Create", arn))
    delete = event("Delete", arn, PhysicalResourceId="ray/ray-cluster-gcs-store")
    assert module.on_event(delete) == {"PhysicalResourceId": "ray/ray-cluster-gcs-store"}
    assert server.secrets == {}
    module.on_event(delete)  # the namespace (and the Secret with it) went first
    assert '"result": "already gone"' in capsys.readouterr().out


def test_an_untrusted_api_certificate_fails_the_request(handler, tmp_path):
    module, server, _ = handler
    _, _, foreign = _self_signed(tmp_path / "other")  # a CA that did not sign the server's certificate
    api = module.KubernetesApi(f"https://localhost:{server.server_address[1]}", foreign, "token")
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        api.request("DELETE", "/api/v1/namespaces/ray/secrets/x")
    assert server.requests == []


def test_the_token_is_a_presigned_get_caller_identity_that_signs_the_cluster_name(handler):
    module, _, _ = handler
    token = module.eks_token(CLUSTER, boto3.session.Session(region_name="us-east-1"))
    assert token.startswith("k8s-aws-v1.")
    encoded = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    parsed = urllib.parse.urlparse(url)
    query = urllib.parse.parse_qs(parsed.query)
    assert parsed.netloc == "sts.us-east-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert int(query["X-Amz-Expires"][0]) <= 60
