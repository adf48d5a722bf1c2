"""Accelerators per SageMaker HyperPod instance type: the table Ray worker sizing is checked against."""

from typing import NamedTuple


class Accelerators(NamedTuple):
    gpus: int
    efa_interfaces: int


# GPU count and EFA interfaces (the most a pod can request as vpc.amazonaws.com/efa) per ml.* GPU type,
# from the EC2 instance type specifications. Types not listed here have no GPUs.
GPU_INSTANCE_TYPES: dict[str, Accelerators] = {
    "ml.g5.xlarge": Accelerators(1, 0),
    "ml.g5.2xlarge": Accelerators(1, 0),
    "ml.g5.4xlarge": Accelerators(1, 0),
    "ml.g5.8xlarge": Accelerators(1, 1),
    "ml.g5.12xlarge": Accelerators(4, 1),
    "ml.g5.16xlarge": Accelerators(1, 1),
    "ml.g5.24xlarge": Accelerators(4, 1),
    "ml.g5.48xlarge": Accelerators(8, 1),
    "ml.g6.xlarge": Accelerators(1, 0),
    "ml.g6.2xlarge": Accelerators(1, 0),
    "ml.g6.4xlarge": Accelerators(1, 0),
    "ml.g6.8xlarge": Accelerators(1, 1),
    "ml.g6.12xlarge": Accelerators(4, 1),
    "ml.g6.16xlarge": Accelerators(1, 1),
    "ml.g6.24xlarge": Accelerators(4, 1),
    "ml.g6.48xlarge": Accelerators(8, 1),
    "ml.g6e.xlarge": Accelerators(1, 0),
    "ml.g6e.12xlarge": Accelerators(4, 1),
    "ml.g6e.24xlarge": Accelerators(4, 2),
    "ml.g6e.48xlarge": Accelerators(8, 4),
    "ml.p4d.24xlarge": Accelerators(8, 4),
    "ml.p4de.24xlarge": Accelerators(8, 4),
    "ml.p5.48xlarge": Accelerators(8, 32),
    "ml.p5e.48xlarge": Accelerators(8, 32),
    "ml.p5en.48xlarge": Accelerators(8, 16),
    "ml.p6-b200.48xlarge": Accelerators(8, 8),
}


def accelerators(instance_type: str) -> Accelerators:
    """GPUs and EFA interfaces of an instance type; (0, 0) for CPU-only types."""
    return GPU_INSTANCE_TYPES.get(instance_type, Accelerators(0, 0))
