"""CloudFormation custom resource for a SageMaker HyperPod cluster, for the CDK Provider framework.

Create: `create_cluster`, tagged with this resource's identity (stack id + logical id); a name already in use
is adopted when those tags say this resource created it (a retry after a lost response), refused otherwise.
Update: decided from the live cluster (`describe_cluster`), so a rollback to what the cluster already is
succeeds without a call; a create-only change fails before any call that changes anything; a busy cluster is
waited for. Delete: `delete_cluster`, re-issued until the service accepts it. The physical id is the name;
a Delete whose physical id CloudFormation invented (`<stack>-<logical id>-<suffix>`: it stopped waiting for a
Create) deletes the configured cluster when its owner tags name this resource.

`on_event` starts the change and returns at once; `is_complete` is polled by the framework until the cluster
is InService and matches the request (create, update) or is gone (delete). Both are stateless: what they need
is in the event (the framework merges `on_event`'s answer into it) and in `describe_cluster`. Each request has
a wall-clock budget (`WAIT_BUDGET_SECONDS`), below CloudFormation's hour, after which it fails with a message
that says what to do, instead of CloudFormation's bare timeout.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import sys
import time
from typing import Any

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from cfn_coerce import ConfigError, coerce_request
from cluster_diff import (
    CreateOnlyChangeError,
    create_only_changes,
    describe_create_only,
    live_differences,
    tag_changes,
    target_differences,
    update_request,
)

PROPERTY = "ClusterConfig"
# What CloudFormation adds to ResourceProperties besides the template's own: the provider's token, and the
# resource's ServiceTimeout (the CFN request reference sends every property but the token verbatim; public
# handlers strip both).
IGNORED_PROPERTIES = {"ServiceToken", "ServiceTimeout"}
CLUSTER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
READY = "InService"
DELETING = "Deleting"
FAILED = "Failed"
# Statuses that end on their own; an update waits them out. RollingBack fails a create (its own create
# failed).
BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack"}
# Who created a cluster: CloudFormation's own identity of this resource. Tag keys may not start with "aws:".
OWNER_STACK_TAG = "ray-on-hyperpod:cfn-stack-id"
OWNER_LOGICAL_TAG = "ray-on-hyperpod:cfn-logical-id"
# Keys on_event adds to its answer; the framework merges them into every is_complete event.
STARTED_AT = "HyperPodStartedAt"
RECONCILE = "HyperPodReconcile"
# Set when on_event's CreateCluster was accepted: completion is InService with the requested targets.
CREATED = "HyperPodCreated"
# The cluster a Delete waits for when it is not the physical id (an abandoned Create's invented id).
DELETE_TARGET = "HyperPodDeleteTarget"
BUDGET_ENV = "WAIT_BUDGET_SECONDS"
# The SDK versions the app was synthesized and tested with (set by the construct): named with the runtime's
# own when the runtime's model lacks a member the request uses.
SDK_ENV = "BUILT_WITH_SDK"
DEFAULT_BUDGET_SECONDS = 45 * 60
# One attempt is bounded by the socket timeouts; retries are the handler's own (`_call`), capped by the
# invocation's remaining time (context.get_remaining_time_in_millis()), so no invocation outlives its Lambda:
# an attempt starts only while it, the calls reserved after it and SAFETY_SECONDS still fit.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 20
ATTEMPT_SECONDS = CONNECT_TIMEOUT + READ_TIMEOUT
MAX_ATTEMPTS = 6  # botocore standard mode's default with 5 retries
MAX_BACKOFF_SECONDS = 20  # standard mode's cap
SAFETY_SECONDS = 10  # left for the framework to send its answer after the handler returns or raises
DEFAULT_TIMEOUT_SECONDS = (
    300  # when invoked without a Lambda context (tests): the construct's handler timeout
)
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
)
# Error codes botocore's standard mode retries (throttling and transient); 5xx answers are retried too.
RETRYABLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
}

# The monotonic time by which the current invocation must have returned (set at each entry point).
_deadline: list[float] = [0.0]

# Last status logged per (request, cluster), so a warm container logs transitions, not every poll.
_last_status: dict[tuple[str, str], str] = {}


class ClusterFailedError(RuntimeError):
    """The cluster reached Failed (or RollingBack while created); the message carries its FailureMessage."""


class ClusterNotOwnedError(RuntimeError):
    """The cluster name is taken by a cluster this resource did not create."""


class BudgetExceededError(RuntimeError):
    """The request ran out of its wall-clock budget; the message says what is left to do."""


class OutOfTimeError(RuntimeError):
    """The invocation has no time left for another attempt; raised before the Lambda timeout would hit."""


@functools.cache
def _client() -> Any:
    """The SageMaker client, created on first use; tests replace this function with a stub."""
    return boto3.client("sagemaker", config=CLIENT_CONFIG)


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Start a Create, Update or Delete; `is_complete` waits for it."""
    _start_clock(context)
    handlers = {"Create": _create, "Update": _update, "Delete": _delete}
    return handlers[event["RequestType"]](event)


def is_complete(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Report whether the cluster reached the state the request asked for."""
    _start_clock(context)
    name = event["PhysicalResourceId"]
    if event["RequestType"] == "Delete":
        return _deleted(event, event.get(DELETE_TARGET) or name)
    if event.get(DELETE_TARGET) and not _deleted(event, event[DELETE_TARGET])["IsComplete"]:
        return {"IsComplete": False}  # an abandoned replacement goes first: CloudFormation will not ask again
    cluster = _call("describe_cluster", ClusterName=name)
    status = cluster["ClusterStatus"]
    _log_status(event, name, status)
    if status == FAILED or (status == "RollingBack" and not event.get(RECONCILE)):
        reason = cluster.get("FailureMessage") or "no FailureMessage given"
        raise ClusterFailedError(f"HyperPod cluster {name!r} is {status}: {reason}")
    config = _config(event["ResourceProperties"])
    if event.get(CREATED) and not event.get(RECONCILE):
        # A fresh create: done at InService with the requested groups' targets; field echoes may differ in
        # form (documented normalizations are for updates and adoption).
        differences = target_differences(cluster, config) if status == READY else []
    else:
        differences = live_differences(cluster, config) if status == READY else []
    if status == READY and not differences:
        data = {"ClusterArn": cluster["ClusterArn"], "ClusterName": name, "ClusterStatus": status}
        return {"IsComplete": True, "Data": data}
    _check_budget(event, name, status, differences)
    if status == READY and event.get(RECONCILE):
        # The cluster was busy when on_event ran (or this resource adopted it): apply the change now.
        _send_update(event, name, cluster, config, _same_cluster_old_config(event, name))
    return {"IsComplete": False}


# --- create -----------------------------------------------------------------------------------------


def _create(event: dict[str, Any]) -> dict[str, Any]:
    config = _config(event["ResourceProperties"])
    name = config["ClusterName"]
    request = {**config, "Tags": _owner_tags(event) + [t for t in config.get("Tags", []) if not _is_owner(t)]}
    try:
        # Time is kept for the existence check and the adoption after it (three calls).
        _call("create_cluster", reserve=3 * ATTEMPT_SECONDS, **request)
    except ClientError as err:
        if _name_in_use(err):
            return _adopt(event, config)
        # An answer after a lost first attempt may be about the retry, not the request that went through.
        if not _exists(name, reserve=2 * ATTEMPT_SECONDS):
            raise
        return _adopt(event, config)
    except (BotoCoreError, OutOfTimeError):
        # No answer after every retry: the request may still have created the cluster. Adopt it if so;
        # otherwise fail, and nothing exists.
        if not _exists(name, reserve=2 * ATTEMPT_SECONDS):
            raise
        return _adopt(event, config)
    _log("create_requested", event, name)
    return {**_started(name), CREATED: True}


def _adopt(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Take over a cluster of this name if this resource created it (a retry after a lost response)."""
    name = config["ClusterName"]
    cluster = _call("describe_cluster", reserve=ATTEMPT_SECONDS, ClusterName=name)
    tags = _tags(cluster["ClusterArn"])
    if not _owned_by(event, tags):
        owner = {tag["Key"]: tag["Value"] for tag in _owner_tags(event)}
        found = {key: tags.get(key, "<none>") for key in owner}
        raise ClusterNotOwnedError(
            f"HyperPod cluster {name!r} already exists in this account and region and was not created by "
            "this "
            f"resource (its tags {found} are not {owner}). Choose another hyperpod.cluster_name, or delete "
            "that cluster if it is yours."
        )
    status = cluster["ClusterStatus"]
    if status in (DELETING, FAILED):
        raise RuntimeError(f"HyperPod cluster {name!r} is {status}; deploy again once it is gone")
    paths = create_only_changes(cluster, config)
    if paths:
        raise CreateOnlyChangeError(describe_create_only(name, paths))
    _log("adopted", event, name, status=status)
    return {**_started(name), RECONCILE: True}


# --- update -----------------------------------------------------------------------------------------


def _update(event: dict[str, Any]) -> dict[str, Any]:
    new = _config(event["ResourceProperties"])
    name = event["PhysicalResourceId"]
    if new["ClusterName"] != name:
        # Replacement: CloudFormation deletes the old cluster once this one is InService.
        _log("replace", event, name, newCluster=new["ClusterName"])
        return _create(event)
    old = _old_config(event)
    abandoned = _abandoned_replacement(event, old)
    cluster = _call("describe_cluster", ClusterName=name)
    paths = create_only_changes(cluster, new)
    if paths:  # before any call that changes anything, so CloudFormation's rollback finds nothing to undo
        raise CreateOnlyChangeError(describe_create_only(name, paths))
    status = cluster["ClusterStatus"]
    if status not in BUSY and status != READY:
        reason = cluster.get("FailureMessage") or "no FailureMessage given"
        raise ClusterFailedError(f"HyperPod cluster {name!r} is {status}: {reason}")
    _retag(cluster["ClusterArn"], old, new)
    started = {**_started(name), **({DELETE_TARGET: abandoned} if abandoned else {})}
    if status != READY:
        _log("update_deferred", event, name, status=status)
        return {**started, RECONCILE: True}
    sent = _send_update(event, name, cluster, new, old)
    return {**started, RECONCILE: not sent}


def _abandoned_replacement(event: dict[str, Any], old: dict[str, Any] | None) -> str | None:
    """The cluster of a rename CloudFormation never heard the end of, now deleted (if this resource made it).

    The only Update whose old properties name another cluster while the physical id is the new one: the
    rollback of a rename that failed or was abandoned before it reported its new id. CloudFormation sends no
    cleanup Delete for an id it was never told, so this Update removes it."""
    name = event["PhysicalResourceId"]
    previous = (old or {}).get("ClusterName")
    if previous in (None, name) or not _is_cluster_name(previous):
        return None
    try:
        cluster = _call("describe_cluster", ClusterName=previous)
    except ClientError as err:
        if not _not_found(err):
            raise
        return None
    if not _owned_by(event, _tags(cluster["ClusterArn"])):
        _log("delete_skipped", event, previous, reason="cluster not created by this resource")
        return None
    _log("delete_abandoned_replacement", event, previous)
    _request_delete(event, previous)
    return str(previous)


def _send_update(
    event: dict[str, Any],
    name: str,
    cluster: dict[str, Any],
    new: dict[str, Any],
    old: dict[str, Any] | None = None,
) -> bool:
    """UpdateCluster with what the live cluster lacks; False if there was nothing to send or it was busy."""
    members = set(_operation_shape("UpdateCluster").members)
    request, unset = update_request(cluster, old, new, members)
    if request is None:
        _log("update_not_needed", event, name, unchanged=unset or None)
        return False
    try:
        _call("update_cluster", **request)
    except ClientError as err:
        if _code(err) != "ConflictException":
            raise
        # Busy (an operation or deep health checks in progress): is_complete tries again.
        _log("update_deferred", event, name, reason=_message(err))
        return False
    _log("update_requested", event, name, updated=sorted(k for k in request if k != "ClusterName"))
    return True


def _retag(arn: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    to_add, to_delete = tag_changes(old, new)
    if to_add:
        _call("add_tags", ResourceArn=arn, Tags=to_add)
    to_delete = [key for key in to_delete if key not in (OWNER_STACK_TAG, OWNER_LOGICAL_TAG)]
    if to_delete:
        _call("delete_tags", ResourceArn=arn, TagKeys=to_delete)


# --- delete -----------------------------------------------------------------------------------------


def _delete(event: dict[str, Any]) -> dict[str, Any]:
    name = event["PhysicalResourceId"]
    answer = {"PhysicalResourceId": name, STARTED_AT: time.time()}  # the framework forbids a new id here
    if _is_invented_id(event, name):
        target = _abandoned_cluster(event)
        if target is not None:
            _request_delete(event, target)
            return {**answer, DELETE_TARGET: target}
    elif _is_cluster_name(name):
        _request_delete(event, name)
    else:
        _log("delete_skipped", event, name, reason="physical id is not a cluster name")
    return answer


def _is_invented_id(event: dict[str, Any], name: str) -> bool:
    """CloudFormation's own id for a resource whose Create it stopped waiting for:
    `<stack name>-<logical id>-<suffix>`. A rename's cleanup Delete carries the old cluster's name instead."""
    stack_name = event["StackId"].split(":stack/", 1)[-1].split("/", 1)[0]
    return name.startswith(f"{stack_name}-{event['LogicalResourceId']}-")


def _abandoned_cluster(event: dict[str, Any]) -> str | None:
    """The configured cluster, if it exists and this resource created it (both owner tags match)."""
    try:
        name = _config(event.get("ResourceProperties") or {})["ClusterName"]
    except (ConfigError, ValueError) as err:
        _log("delete_skipped", event, event["PhysicalResourceId"], reason=f"no usable properties: {err}")
        return None
    try:
        cluster = _call("describe_cluster", reserve=2 * ATTEMPT_SECONDS, ClusterName=name)
    except ClientError as err:
        if not _not_found(err):
            raise
        _log("delete_not_found", event, name, reason="abandoned create made no cluster")
        return None
    if not _owned_by(event, _tags(cluster["ClusterArn"], reserve=ATTEMPT_SECONDS)):
        _log("delete_skipped", event, name, reason="cluster not created by this resource")
        return None
    _log("delete_abandoned_create", event, name, physicalId=event["PhysicalResourceId"])
    return name


def _deleted(event: dict[str, Any], name: str) -> dict[str, Any]:
    """Done once describe_cluster no longer finds the cluster; re-issue the delete until it is accepted."""
    if not _is_cluster_name(name) or _is_invented_id(event, name):
        return {"IsComplete": True}  # never a cluster, or an abandoned create that made none of ours
    try:
        cluster = _call("describe_cluster", ClusterName=name)
    except ClientError as err:
        if not _not_found(err):
            raise
        _log_status(event, name, "Deleted")
        return {"IsComplete": True}
    status = cluster["ClusterStatus"]
    _log_status(event, name, status, failureMessage=cluster.get("FailureMessage"))
    _check_budget(event, name, status, [])
    if status != DELETING:
        # The service refuses DeleteCluster while an operation runs (ConflictException, e.g. Creating or
        # Updating), and a Failed cluster needs the delete again: ask on every poll until it is Deleting.
        _request_delete(event, name)
    return {"IsComplete": False}


def _request_delete(event: dict[str, Any], name: str) -> None:
    try:
        _call("delete_cluster", ClusterName=name)
    except ClientError as err:
        if _not_found(err):
            _log("delete_not_found", event, name)
            return
        if _code(err) == "ConflictException":
            _log("delete_deferred", event, name, reason=_message(err))
            return
        raise
    _log("delete_requested", event, name)


# --- time -------------------------------------------------------------------------------------------


def _start_clock(context: Any) -> None:
    """Note when this invocation must be done: Lambda's remaining time, or the construct's timeout."""
    remaining = context.get_remaining_time_in_millis() / 1000 if context else DEFAULT_TIMEOUT_SECONDS
    _deadline[0] = time.monotonic() + remaining


def _seconds_left() -> float:
    return _deadline[0] - time.monotonic()


def _call(operation: str, reserve: float = 0.0, **params: Any) -> Any:
    """One SageMaker call with standard-mode-like retries, each attempt started only while it (at most
    ATTEMPT_SECONDS), `reserve` seconds for the calls that must follow it, and SAFETY_SECONDS still fit in
    the invocation; else OutOfTimeError (or the last error), well before Lambda's timeout."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if _seconds_left() < ATTEMPT_SECONDS + reserve + SAFETY_SECONDS:
            raise OutOfTimeError(f"no time left for {operation} (attempt {attempt})")
        try:
            return getattr(_client(), operation)(**params)
        except (ClientError, BotoCoreError) as err:
            if attempt == MAX_ATTEMPTS or not _retryable(err):
                raise
            # Standard mode's backoff: random up to 2^attempt seconds, capped; skipped if it would not fit.
            pause = random.uniform(0, min(MAX_BACKOFF_SECONDS, 2**attempt))
            if _seconds_left() - pause < ATTEMPT_SECONDS + reserve + SAFETY_SECONDS:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def _retryable(err: Exception) -> bool:
    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _code(err) in RETRYABLE_CODES or status >= 500
    # Connection errors and timeouts; a request the model refuses never reached the service.
    return not isinstance(err, ParamValidationError)


# --- budget -----------------------------------------------------------------------------------------


def _started(name: str) -> dict[str, Any]:
    return {"PhysicalResourceId": name, STARTED_AT: time.time()}


def _check_budget(event: dict[str, Any], name: str, status: str, differences: list[str]) -> None:
    """Fail with a useful message before CloudFormation's hour ends with a bare "timed out"."""
    started = event.get(STARTED_AT)
    budget = int(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_SECONDS))
    if started is None or time.time() - float(started) < budget:
        return
    waited = f"still {status} after {budget // 60} minutes"
    pending = f" (not yet: {', '.join(differences)})" if differences else ""
    if event["RequestType"] == "Delete":
        region = _client().meta.region_name
        raise BudgetExceededError(
            f"HyperPod cluster {name!r} is {waited} and was not deleted within CloudFormation's hour; its "
            f"instances keep running and billing. Finish the deletion with: aws sagemaker delete-cluster "
            f"--cluster-name {name} --region {region} ; then retry the stack deletion or rollback."
        )
    raise BudgetExceededError(
        f"HyperPod cluster {name!r} is {waited}{pending}, past what one CloudFormation custom resource may "
        "wait. With hyperpod.node_provisioning_mode=Continuous the cluster is InService once its "
        "cluster-level "
        "resources are ready; see the README's HyperPod section."
    )


# --- helpers ----------------------------------------------------------------------------------------


def _owner_tags(event: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"Key": OWNER_STACK_TAG, "Value": event["StackId"]},
        {"Key": OWNER_LOGICAL_TAG, "Value": event["LogicalResourceId"]},
    ]


def _owned_by(event: dict[str, Any], tags: dict[str, str]) -> bool:
    """Both owner tags name this event's stack and logical id."""
    return all(tags.get(tag["Key"]) == tag["Value"] for tag in _owner_tags(event))


def _is_owner(tag: dict[str, str]) -> bool:
    return tag["Key"] in (OWNER_STACK_TAG, OWNER_LOGICAL_TAG)


def _tags(arn: str, reserve: float = 0.0) -> dict[str, str]:
    tags: dict[str, str] = {}
    token = None
    while True:
        page = _call("list_tags", reserve=reserve, ResourceArn=arn, **({"NextToken": token} if token else {}))
        tags.update({tag["Key"]: tag.get("Value", "") for tag in page.get("Tags", [])})
        token = page.get("NextToken")
        if not token:
            return tags


def _exists(name: str, reserve: float = 0.0) -> bool:
    try:
        _call("describe_cluster", reserve=reserve, ClusterName=name)
    except ClientError as err:
        if _not_found(err):
            return False
        raise
    return True


def _config(properties: dict[str, Any]) -> dict[str, Any]:
    """The CreateCluster request from the resource properties, with its types restored."""
    unknown = sorted(set(properties) - {PROPERTY, *IGNORED_PROPERTIES})
    if unknown:
        raise ConfigError(f"unknown resource properties {unknown}; only {PROPERTY} is accepted")
    if PROPERTY not in properties:
        raise ConfigError(f"missing resource property {PROPERTY}")
    try:
        return coerce_request(properties[PROPERTY], _operation_shape("CreateCluster"), PROPERTY)
    except ConfigError as err:
        if "unknown member" not in str(err):
            raise
        runtime = f"boto3 {boto3.__version__}, botocore {botocore.__version__}"
        built = os.environ.get(SDK_ENV, "an unrecorded SDK")
        raise ConfigError(
            f"{err} (this Lambda runtime's SDK is {runtime}; the app was built and tested with {built}: "
            "a member the runtime lacks needs a newer Lambda runtime, or a request without it)"
        ) from err


def _old_config(event: dict[str, Any]) -> dict[str, Any] | None:
    """The previous properties, or None if they no longer pass the model (an older handler's properties):
    decisions then rest on the live cluster alone."""
    try:
        return _config(event.get("OldResourceProperties") or {})
    except (ConfigError, ValueError):
        return None


def _same_cluster_old_config(event: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The previous properties when they describe this very cluster (an in-place update), else None."""
    old = _old_config(event) if event["RequestType"] == "Update" else None
    return old if old is not None and old.get("ClusterName") == name else None


def _operation_shape(operation: str) -> Any:
    return _client().meta.service_model.operation_model(operation).input_shape


def _is_cluster_name(name: str) -> bool:
    """False for ids that were never a cluster, e.g. the framework's failed-create marker."""
    return bool(CLUSTER_NAME.fullmatch(name or ""))


def _name_in_use(err: ClientError) -> bool:
    # The model declares ResourceInUse; accept a ValidationException that says the same.
    if _code(err) == "ResourceInUse":
        return True
    return _code(err) == "ValidationException" and "already exists" in _message(err).lower()


def _not_found(err: ClientError) -> bool:
    # The model declares ResourceNotFound; moto (and older endpoints) answer ValidationException
    # "Could not find cluster ...". Accept both rather than leave a stack stuck on delete.
    code, message = _code(err), _message(err).lower()
    if code in ("ResourceNotFound", "ResourceNotFoundException"):
        return True
    return code == "ValidationException" and any(
        text in message for text in ("not found", "could not find", "does not exist")
    )


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def _message(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Message", "")


def _log_status(event: dict[str, Any], name: str, status: str, **fields: Any) -> None:
    key = (event.get("RequestId", ""), name)
    previous = _last_status.get(key)
    if previous == status:
        return
    _last_status[key] = status
    _log("status", event, name, status=status, previous=previous, **fields)


def _log(action: str, event: dict[str, Any], name: str, **fields: Any) -> None:
    """One JSON line per state change: identifiers and statuses only, never the event or config."""
    record = {
        "action": action,
        "requestType": event.get("RequestType"),
        "requestId": event.get("RequestId"),
        "logicalResourceId": event.get("LogicalResourceId"),
        "cluster": name,
        **{k: v for k, v in fields.items() if v is not None},
    }
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()
