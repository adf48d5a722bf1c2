"""What `make deploy` needs on this machine and in the account, checked before anything is synthesized:
kubectl, the AWS CLI v2, Docker (when the deploy builds the Ray image) and the CDK bootstrap stack."""

import botocore.exceptions

from .tools import OpsError, run_tool, tool_path

BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"  # the default qualifier's


def tool_problems(builds_image: bool) -> list[str]:
    """One line per missing or unfit tool (empty when all are there)."""
    problems = []
    for name in ("kubectl", "aws"):
        try:
            tool_path(name)
        except OpsError as error:
            problems.append(str(error))
    if not problems or "aws not found" not in " ".join(problems):
        version = _quietly("aws", "--version")
        if version is not None and not version.startswith("aws-cli/2"):
            problems.append(f"the AWS CLI is {version.split()[0]}: `aws eks update-kubeconfig` needs v2")
    if builds_image and _quietly("docker", "info", "--format", "{{.ServerVersion}}") is None:
        problems.append(
            "Docker is not running (or not installed): the deploy builds the Ray image "
            "(or set ray.image_uri to an image you pushed)"
        )
    return problems


def _quietly(*command: str) -> str | None:
    try:
        return run_tool(*command, timeout=30).strip()
    except OpsError:
        return None


def bootstrap_problem(ssm, account: str, region: str) -> str | None:
    """The CDK bootstrap stack's version parameter; missing: the account/region was never bootstrapped."""
    try:
        ssm.get_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return f"{account}/{region} is not bootstrapped: `npx cdk bootstrap aws://{account}/{region}`"
        raise
    return None
