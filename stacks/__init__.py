"""CloudFormation stacks: each composes constructs and decides one deployment boundary."""
