"""Custom resource: copy one Secrets Manager secret into a Kubernetes Secret, without the value ever
passing through CloudFormation.

Why not a KubernetesManifest with a `{{resolve:secretsmanager:...}}` value: CloudFormation resolves the
reference into the custom resource's properties, and CDK's kubectl handler logs every event it receives,
so the token would land in plain text in its CloudWatch log group. Here the event carries only the
secret's ARN; this function reads the value itself and logs nothing of it.

Create / Update: read the secret, then create or replace the Kubernetes Secret `Namespace/Name` (one key,
`Key`) through the EKS API with a token of this function's role (an EKS access entry scoped to the
namespace). Delete: delete it (already gone is fine: the namespace may have gone first).
Physical id: `<namespace>/<name>`. on_event does the whole job (no polling).

Properties: ClusterName, SecretArn, Namespace, Name, Key.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from typing import Any

import boto3
from botocore.config import Config
from botocore.signers import RequestSigner

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
TOKEN_PREFIX = "k8s-aws-v1."
TOKEN_TTL_S = 60
HTTP_TIMEOUT_S = 20


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service, config=CLIENT_CONFIG)


def _log(action: str, event: dict[str, Any], **fields: Any) -> None:
    print(json.dumps({"action": action, "requestId": event.get("RequestId"),
                      "logicalResourceId": event.get("LogicalResourceId"), **fields}))  # fmt: skip


def eks_token(cluster_name: str, session: Any = None) -> str:
    """A bearer token for the EKS API: a presigned STS GetCallerIdentity URL naming the cluster
    (the scheme `aws eks get-token` uses)."""
    session = session or boto3.session.Session()
    sts = session.client("sts", config=CLIENT_CONFIG)
    signer = RequestSigner(
        sts.meta.service_model.service_id, session.region_name, "sts", "v4",
        session.get_credentials(), session.events,
    )  # fmt: skip
    url = signer.generate_presigned_url(
        {
            "method": "GET",
            "url": f"https://sts.{session.region_name}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            "body": {},
            "headers": {"x-k8s-aws-id": cluster_name},
            "context": {},
        },
        region_name=session.region_name,
        expires_in=TOKEN_TTL_S,
        operation_name="",
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def secret_manifest(namespace: str, name: str, key: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "cloudformation"},
        },
        "data": {key: base64.b64encode(value.encode()).decode()},
    }


class KubernetesApi:
    """The few calls this handler needs, over HTTPS with the cluster's own CA."""

    def __init__(self, endpoint: str, ca_data: str, token: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as ca:
            ca.write(base64.b64decode(ca_data).decode())
        self._tls = ssl.create_default_context(cafile=ca.name)
        self._token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        """The HTTP status; raises on anything but 2xx and 404 (the caller decides what 404 means)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._tls, timeout=HTTP_TIMEOUT_S) as response:
                return response.status
        except urllib.error.HTTPError as error:
            if error.code in (404, 409):
                return error.code
            # The API's message names the object and the reason (RBAC, validation), never the data.
            raise RuntimeError(f"{method} {path}: HTTP {error.code}: {error.read()[:500]!r}") from None


def _api(cluster_name: str) -> KubernetesApi:
    cluster = _client("eks").describe_cluster(name=cluster_name)["cluster"]
    return KubernetesApi(
        cluster["endpoint"], cluster["certificateAuthority"]["data"], eks_token(cluster_name)
    )


def put_secret(api: KubernetesApi, manifest: dict[str, Any]) -> str:
    """Create, or replace when it exists. Returns what was done."""
    meta = manifest["metadata"]
    collection = f"/api/v1/namespaces/{meta['namespace']}/secrets"
    if api.request("POST", collection, manifest) != 409:
        return "created"
    api.request("PUT", f"{collection}/{meta['name']}", manifest)
    return "replaced"


def delete_secret(api: KubernetesApi, namespace: str, name: str) -> str:
    status = api.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return "already gone" if status == 404 else "deleted"


def on_event(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    props = event["ResourceProperties"]
    namespace, name = props["Namespace"], props["Name"]
    physical_id = f"{namespace}/{name}"
    api = _api(props["ClusterName"])
    if event["RequestType"] == "Delete":
        _log("delete", event, secret=physical_id, result=delete_secret(api, namespace, name))
        return {"PhysicalResourceId": event.get("PhysicalResourceId", physical_id)}
    value = _client("secretsmanager").get_secret_value(SecretId=props["SecretArn"])["SecretString"]
    result = put_secret(api, secret_manifest(namespace, name, props["Key"], value))
    _log(event["RequestType"].lower(), event, secret=physical_id, result=result)
    return {"PhysicalResourceId": physical_id}
