"""The CLI's one way to AWS: a boto3 session from the user's own profile and region, and every AWS error a
user can cause (no credentials, unknown profile, no region, expired token, refused call) as one line."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import botocore.exceptions
from botocore.config import Config

from .tools import OpsError

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
CREDENTIALS_HINT = "`aws configure`, `aws sso login` or AWS_PROFILE=<profile>"


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn botocore's exceptions into an OpsError that says what was being done and how to fix it."""
    try:
        yield
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
        raise OpsError(f"{doing}: no AWS credentials: {CREDENTIALS_HINT}") from None
    except botocore.exceptions.ProfileNotFound as error:
        raise OpsError(f"{doing}: {error} (set AWS_PROFILE to one in ~/.aws/config)") from None
    except botocore.exceptions.NoRegionError:
        raise OpsError(f"{doing}: no AWS region: set AWS_REGION or env.region in the config") from None
    except (botocore.exceptions.SSOError, botocore.exceptions.TokenRetrievalError) as error:
        raise OpsError(f"{doing}: {error} (run `aws sso login`)") from None
    except botocore.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        message = error.response.get("Error", {}).get("Message", str(error))
        raise OpsError(f"{doing}: AWS refused ({code}): {message}") from None
    except botocore.exceptions.BotoCoreError as error:  # endpoint unreachable, bad config, ...
        raise OpsError(f"{doing}: {error}") from None


def session(region: str | None = None) -> boto3.Session:
    """The user's session; region: the given one (the config's env.region), else AWS_REGION, else the
    profile's (boto3 reads AWS_DEFAULT_REGION and the profile itself; the CDK CLI also honours AWS_REGION)."""
    with aws_errors("AWS session"):
        return boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None)


def client(service: str, region: str | None = None):
    found = session(region)
    if found.region_name is None:
        raise OpsError("no AWS region: set AWS_REGION, `aws configure set region <region>` or env.region")
    with aws_errors(f"AWS {service} client"):
        return found.client(service, config=CLIENT_CONFIG)
