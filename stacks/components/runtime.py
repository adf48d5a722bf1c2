"""The one Lambda runtime of this app's own handlers (lambda/)."""

from aws_cdk import aws_lambda as lambda_

# The latest Python, as cdk-nag's L1 asks, so that a runtime upgrade is a one-line change here and the
# handlers never drift apart.
HANDLER_RUNTIME = lambda_.Runtime.PYTHON_3_14
