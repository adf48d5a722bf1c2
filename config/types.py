"""Reusable field types: each is a `str` checked against the rule of the system that will receive it.

Every rule matches the whole value (`re.fullmatch`): `re.match` with `$` would let a trailing newline
through, and a value that reaches a shell, a YAML manifest or an AWS API must be exactly what it looks like.
Each type carries a `Rule` (what is allowed, in words) that the error message and the generated
configuration reference (docs/CONFIGURATION.md) both show.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from botocore.loaders import Loader
from pydantic import AfterValidator

# Namespaces this app must never create, own or delete: Kubernetes' own, where deleting them on `cdk destroy`
# (the app owns its namespaces) would break the cluster.
RESERVED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
# AWS refuses user tags whose key starts with aws: (any case).
RESERVED_TAG_PREFIX = "aws:"
# The characters AWS tag keys and values accept: Unicode letters, digits and spaces, and these (the
# `[\p{L}\p{Z}\p{N}_.:/=+\-@]*` pattern of the SageMaker and EKS service models).
TAG_PUNCTUATION = frozenset("_.:/=+-@")


@dataclass(frozen=True)
class Rule:
    """What a type allows, in words: shown in error messages and in the configuration reference."""

    text: str


def checked(rule: str, check: Callable[[str], bool]) -> Any:
    """A `str` type that refuses any value `check` rejects, with `rule` as the message."""

    def validate(value: str) -> str:
        if not check(value):
            raise ValueError(f"must be {rule}")
        return value

    return Annotated[str, AfterValidator(validate), Rule(rule)]


def matching(regex: str, rule: str, *, max_length: int | None = None, min_length: int = 1) -> Any:
    compiled = re.compile(regex, re.ASCII)

    def check(value: str) -> bool:
        return (
            min_length <= len(value) <= (max_length or len(value)) and compiled.fullmatch(value) is not None
        )

    return checked(rule, check)


# Template markup: text CDK or CloudFormation would read as structure instead of data. A CDK token marker
# (`${Token[...]}`) becomes a Ref or aborts synth; a dynamic reference (`{{resolve:ssm:...}}`,
# `{{resolve:secretsmanager:...}}`) is resolved by CloudFormation in every resource property, so a secret
# would land in cleartext in a manifest and in the kubectl handler's log. `${` covers CDK's markers and
# Fn::Sub syntax; `{{resolve:` is CloudFormation's dynamic-reference prefix (case-sensitive there, refused
# in any case here).
TEMPLATE_MARKERS = ("${", "{{resolve:")


def template_marker(value: str) -> str | None:
    """The first template marker in `value` (case-insensitive), or None."""
    folded = value.lower()
    return next((marker for marker in TEMPLATE_MARKERS if marker in folded), None)


def free_text(rule: str, check: Callable[[str], bool]) -> Any:
    """A free-text `str` type: `check`, and no CDK token marker or CloudFormation dynamic reference."""
    return checked(
        f"{rule}, without '${{' or '{{{{resolve:' (CDK and CloudFormation read them as template markup)",
        lambda value: check(value) and template_marker(value) is None,
    )


# --- Kubernetes names (apimachinery validation.go) ---------------------------------------------------------
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(\.{_LABEL})*"
_QUALIFIED = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"

DnsLabel = matching(
    _LABEL,
    "a DNS-1123 label: 1-63 lower-case letters, digits and '-', starting and ending alphanumeric",
    max_length=63,
)
DnsSubdomain = matching(
    _SUBDOMAIN,
    "a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', each dot-separated part "
    "starting and ending alphanumeric",
    max_length=253,
)


def _qualified_name(value: str) -> bool:
    """A label key: `[prefix/]name`, prefix a DNS subdomain of <= 253, name <= 63 (validation.go)."""
    prefix, slash, name = value.rpartition("/")
    if slash and not (len(prefix) <= 253 and re.fullmatch(_SUBDOMAIN, prefix, re.ASCII)):
        return False
    return len(name) <= 63 and re.fullmatch(_QUALIFIED, name, re.ASCII) is not None


LABEL_KEY_RULE = (
    "a Kubernetes label key: an optional DNS-subdomain prefix and '/', then 1-63 letters, digits, '-', '_' "
    "and '.', starting and ending alphanumeric"
)
LabelKey = checked(LABEL_KEY_RULE, _qualified_name)
LabelValue = matching(
    f"({_QUALIFIED})?",
    "a Kubernetes label value: empty, or 1-63 letters, digits, '-', '_' and '.', starting and ending "
    "alphanumeric",
    max_length=63,
    min_length=0,
)
# Taint keys and values follow the label rules (core/v1 validation).
TaintKey = checked(LABEL_KEY_RULE.replace("label key", "taint key"), _qualified_name)
TaintValue = LabelValue


def _namespace(value: str) -> bool:
    return (
        value not in RESERVED_NAMESPACES
        and len(value) <= 63
        and re.fullmatch(_LABEL, value, re.ASCII) is not None
    )


Namespace = checked(
    "a DNS-1123 label (1-63 lower-case letters, digits and '-') other than "
    f"{', '.join(sorted(RESERVED_NAMESPACES))}: the app creates and deletes this namespace",
    _namespace,
)
_QUANTITY = re.compile(r"(\d+(\.\d*)?|\.\d+)(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E|[eE][+-]?\d{1,3})?", re.ASCII)
# Kubernetes keeps a quantity in an int64 of its base unit (apimachinery resource.Quantity): anything
# larger is clamped by the API server, and arithmetic on it here (1e306 cores) overflows to NaN.
MAX_QUANTITY = 2**63 - 1


def _quantity(value: str) -> bool:
    match = _QUANTITY.fullmatch(value) if len(value) <= 64 else None
    if match is None:
        return False
    number, suffix = match.group(1), match.group(3) or ""
    if suffix == "m":  # milli-units must be whole: the capacity model counts millicores as integers
        return "." not in number and int(number) <= MAX_QUANTITY
    scale = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
    scale |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    factor = Decimal(10) ** int(suffix[1:]) if suffix[:1] in ("e", "E") else Decimal(scale.get(suffix, 1))
    return Decimal(number) * factor <= MAX_QUANTITY


Quantity = checked(
    f"a Kubernetes quantity such as 4, 500m or 16Gi, at most {MAX_QUANTITY} in its base unit "
    "(whole numbers before an 'm' suffix)",
    _quantity,
)
# KubeRay RayCluster/RayJob names are DNS-1035 labels (they start with a letter); their length limits are
# checked where they are used (config/ray.py).
DnsLabel1035 = matching(
    r"[a-z]([-a-z0-9]*[a-z0-9])?",
    "a DNS-1035 label: lower-case letters, digits and '-', starting with a letter and ending alphanumeric",
    max_length=63,
)

# --- AWS --------------------------------------------------------------------------------------------------
AccountId = matching(r"\d{12}", "a 12-digit AWS account id")


@cache
def aws_regions() -> frozenset[str]:
    """Every region of every partition known to the pinned botocore (its endpoints.json)."""
    partitions = Loader().load_data("endpoints")["partitions"]
    return frozenset(region for partition in partitions for region in partition["regions"])


@cache
def region_partitions() -> dict[str, str]:
    """Each region's partition (aws, aws-cn, aws-us-gov, ...) from the pinned botocore's endpoints.json."""
    partitions = Loader().load_data("endpoints")["partitions"]
    return {region: partition["partition"] for partition in partitions for region in partition["regions"]}


def arn_partition_and_region(arn: str) -> tuple[str, str]:
    """The partition and region fields of an ARN (`arn:<partition>:<service>:<region>:...`)."""
    parts = arn.split(":")
    return parts[1], parts[3]


Region = checked(
    "an AWS region known to the pinned botocore, such as us-west-2", lambda v: v in aws_regions()
)
_PARTITION = r"aws(-cn|-us-gov|-iso|-iso-[a-z]|-eusc)?"
IamPrincipalArn = matching(
    rf"arn:{_PARTITION}:iam::\d{{12}}:(role|user)(/[A-Za-z0-9_+=,.@-]+)*/[A-Za-z0-9_+=,.@-]{{1,64}}",
    "an IAM role or user ARN, arn:aws:iam::<12 digits>:role/<name> (IAM's name characters)",
    max_length=2048,
)
VpcId = matching(r"vpc-([0-9a-f]{8}|[0-9a-f]{17})", "a VPC id such as vpc-0123456789abcdef0")


def _tag_text(value: str) -> bool:
    return all(char.isalnum() or char.isspace() or char in TAG_PUNCTUATION for char in value) and all(
        char.isprintable() or char == " " for char in value
    )


def _tag_key(value: str) -> bool:
    return 1 <= len(value) <= 128 and _tag_text(value) and not value.lower().startswith(RESERVED_TAG_PREFIX)


TagKey = checked(
    "an AWS tag key: 1-128 letters, digits, spaces and _ . : / = + - @, not starting with the reserved "
    "'aws:'",
    _tag_key,
)
TagValue = checked(
    "an AWS tag value: at most 256 letters, digits, spaces and _ . : / = + - @",
    lambda value: len(value) <= 256 and _tag_text(value),
)


@cache
def _sagemaker_shapes() -> dict[str, Any]:
    """The SageMaker service model's shapes, parsed once (the model is a large JSON file)."""
    return Loader().load_service_model("sagemaker", "service-2")["shapes"]


def _sagemaker_shape(name: str) -> dict[str, Any]:
    return dict(_sagemaker_shapes()[name])


def _sagemaker_name(shape: str) -> Any:
    """A name checked against the SageMaker service model's own pattern and length (pinned botocore)."""

    def check(value: str) -> bool:
        spec = _sagemaker_shape(shape)
        fits = spec.get("min", 0) <= len(value) <= spec.get("max", len(value))
        return fits and re.fullmatch(spec["pattern"], value, re.ASCII) is not None

    return checked(
        f"a SageMaker {shape}: 1-63 letters, digits and hyphens, starting and ending with a letter or digit",
        check,
    )


SageMakerClusterName = _sagemaker_name("ClusterName")
SageMakerInstanceGroupName = _sagemaker_name("ClusterInstanceGroupName")


def _instance_type(value: str) -> bool:
    return value in _sagemaker_shape("ClusterInstanceType")["enum"]


SageMakerInstanceType = checked(
    "a HyperPod instance type of the pinned botocore's ClusterInstanceType list, such as ml.p5.48xlarge",
    _instance_type,
)


def _training_plan(value: str) -> bool:
    plan_name = _sagemaker_shape("TrainingPlanName")["pattern"]
    regex = rf"arn:{_PARTITION}:sagemaker:[a-z0-9-]+:\d{{12}}:training-plan/({plan_name})"
    return re.fullmatch(regex, value, re.ASCII) is not None


TrainingPlanArn = checked(
    "a training plan ARN arn:aws:sagemaker:<region>:<account>:training-plan/<name>", _training_plan
)

# --- Versions, digests, URLs, paths ------------------------------------------------------------------------
_NUM = r"(0|[1-9]\d*)"
_IDENT = r"[0-9A-Za-z-]+"
SemVer = matching(
    rf"{_NUM}\.{_NUM}\.{_NUM}(-{_IDENT}(\.{_IDENT})*)?(\+{_IDENT}(\.{_IDENT})*)?",
    "a semantic version such as 1.17.0 (semver.org; no leading 'v')",
    max_length=128,
)
GitCommit = matching(
    r"[0-9a-f]{40}", "a full 40-character lower-case git commit id (a branch or tag can move)"
)
Sha256 = matching(r"[0-9a-f]{64}", "a sha256 digest: 64 lower-case hex characters")
# Host, optional port, and a path of unreserved characters: no query, fragment, credentials or quoting
# characters, so the URL is the same text in a YAML manifest, a shell line and a git command.
_HOST = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
_PATH = r"(/[A-Za-z0-9._~%+-]*)*"
HttpsUrl = matching(
    rf"https://{_HOST}(:\d{{1,5}})?{_PATH}",
    "an https:// URL of a host, optional port and a path of letters, digits and . _ ~ % + - /",
    max_length=2048,
)
HttpUrl = matching(
    rf"https?://{_HOST}(:\d{{1,5}})?{_PATH}",
    "an http:// or https:// URL of a host, optional port and a path of letters, digits and . _ ~ % + - /",
    max_length=2048,
)
# Relative path inside a repository: plain segments, no '..', no leading '/'.
_SEGMENT = r"(?!\.\.?(/|$))[A-Za-z0-9._-]+"
RelativePath = matching(
    rf"{_SEGMENT}(/{_SEGMENT})*",
    "a relative path of letters, digits, '.', '_' and '-' segments, without '.' or '..' segments",
    max_length=1024,
)
AbsolutePath = matching(
    rf"(/{_SEGMENT})+",
    "an absolute path other than '/', of letters, digits, '.', '_' and '-' segments, without '..'",
    max_length=1024,
)
# A path on the deploying machine: anything the file system accepts except control characters.
LocalPath = free_text(
    "a path without control characters, at most 4096 characters",
    lambda value: 0 < len(value) <= 4096 and all(char.isprintable() for char in value),
)
# Docker image reference (distribution/reference grammar, lower-case repository, optional tag and digest).
_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
ImageUri = matching(
    rf"({_HOST}(:\d{{1,5}})?/)?{_COMPONENT}(/{_COMPONENT})*(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(@sha256:[0-9a-f]{64})?",
    "a container image reference registry/repository:tag (Docker's reference grammar)",
    max_length=512,
)
# Free text that ends up as one argument of a command: any printable character (it is quoted), no control
# characters (a newline would end the command in several places that log or re-read it).
CommandArgument = free_text(
    "one command-line argument of printable characters (no newline or other control character), at most 4096",
    lambda value: len(value) <= 4096 and all(char.isprintable() for char in value),
)

# --- Numbers ----------------------------------------------------------------------------------------------
# The values CloudWatch Logs accepts for a retention period (PutRetentionPolicy).
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)


def _retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"must be one of {', '.join(map(str, sorted(LOG_RETENTION_DAYS)))}")
    return days


LogRetentionDays = Annotated[
    int,
    AfterValidator(_retention),
    Rule("a CloudWatch Logs retention: one of " + ", ".join(map(str, sorted(LOG_RETENTION_DAYS)))),
]
