"""What each SageMaker HyperPod instance type has: vCPUs, memory, GPUs, EFA devices and GPU model.

The capacity model (`config/capacity.py`) derives Ray pod sizes from this table and checks configured sizes
against it, so a type missing here is a config error, never a guess.

Sources (public):
- The instance types HyperPod offers: the `ClusterInstanceType` enum of SageMaker's service model in
  botocore 1.44.8 (tests/config/test_capacity.py checks every key against it).
- vCPUs, memory (GiB), NVIDIA GPUs and EFA devices: the `INSTANCE_RESOURCES` table that AWS publishes in
  aws/sagemaker-hyperpod-cli (`src/sagemaker/hyperpod/training/constants.py`, commit bba18610, 2026-04-15),
  which the HyperPod CLI uses to size jobs; g4dn, c6a, m6a and r5d.16xlarge, which it lacks, from the EC2
  instance type specifications (docs.aws.amazon.com/ec2/latest/instancetypes: accelerated computing,
  compute optimized, general purpose, memory optimized; EFA column of "Networking specifications").
- GPU models: the same EC2 specifications (accelerated computing, "GPU" column).

Left out on purpose: arm64 types (Graviton c6g/c7g/c8g/m6g/m7g/m8g, and p6e-gb200 whose CPU is Grace),
because the Ray image is built for linux/amd64; and ml.g7.*, ml.c8a.16xlarge and ml.m8a.16xlarge, whose
figures had no public source at hand. Choosing one is a config error that says so.
Trainium types (trn1/trn2) carry Neuron devices, not GPUs: they count 0 GPUs here.
"""

from typing import NamedTuple


class InstanceFacts(NamedTuple):
    vcpus: int  # with hyperthreading on (ThreadsPerCore 2): what EC2 lists
    memory_gib: int
    gpus: int
    efa: int  # EFA devices: the most a pod can request as vpc.amazonaws.com/efa
    gpu_model: str | None


INSTANCE_FACTS: dict[str, InstanceFacts] = {
    "ml.p4d.24xlarge": InstanceFacts(96, 1152, 8, 4, "A100-40GB"),
    "ml.p4de.24xlarge": InstanceFacts(96, 1152, 8, 4, "A100-80GB"),
    "ml.p5.48xlarge": InstanceFacts(192, 2048, 8, 32, "H100"),
    "ml.p5.4xlarge": InstanceFacts(16, 256, 1, 1, "H100"),
    "ml.trn1.32xlarge": InstanceFacts(128, 512, 0, 8, None),
    "ml.trn1n.32xlarge": InstanceFacts(128, 512, 0, 16, None),
    "ml.g5.xlarge": InstanceFacts(4, 16, 1, 0, "A10G"),
    "ml.g5.2xlarge": InstanceFacts(8, 32, 1, 0, "A10G"),
    "ml.g5.4xlarge": InstanceFacts(16, 64, 1, 0, "A10G"),
    "ml.g5.8xlarge": InstanceFacts(32, 128, 1, 1, "A10G"),
    "ml.g5.12xlarge": InstanceFacts(48, 192, 4, 1, "A10G"),
    "ml.g5.16xlarge": InstanceFacts(64, 256, 1, 1, "A10G"),
    "ml.g5.24xlarge": InstanceFacts(96, 384, 4, 1, "A10G"),
    "ml.g5.48xlarge": InstanceFacts(192, 768, 8, 1, "A10G"),
    "ml.c5.large": InstanceFacts(2, 4, 0, 0, None),
    "ml.c5.xlarge": InstanceFacts(4, 8, 0, 0, None),
    "ml.c5.2xlarge": InstanceFacts(8, 16, 0, 0, None),
    "ml.c5.4xlarge": InstanceFacts(16, 32, 0, 0, None),
    "ml.c5.9xlarge": InstanceFacts(36, 72, 0, 0, None),
    "ml.c5.12xlarge": InstanceFacts(48, 96, 0, 0, None),
    "ml.c5.18xlarge": InstanceFacts(72, 144, 0, 0, None),
    "ml.c5.24xlarge": InstanceFacts(96, 192, 0, 0, None),
    "ml.c5n.large": InstanceFacts(2, 5, 0, 0, None),
    "ml.c5n.2xlarge": InstanceFacts(8, 21, 0, 0, None),
    "ml.c5n.4xlarge": InstanceFacts(16, 42, 0, 0, None),
    "ml.c5n.9xlarge": InstanceFacts(36, 96, 0, 1, None),
    "ml.c5n.18xlarge": InstanceFacts(72, 192, 0, 1, None),
    "ml.m5.large": InstanceFacts(2, 8, 0, 0, None),
    "ml.m5.xlarge": InstanceFacts(4, 16, 0, 0, None),
    "ml.m5.2xlarge": InstanceFacts(8, 32, 0, 0, None),
    "ml.m5.4xlarge": InstanceFacts(16, 64, 0, 0, None),
    "ml.m5.8xlarge": InstanceFacts(32, 128, 0, 0, None),
    "ml.m5.12xlarge": InstanceFacts(48, 192, 0, 0, None),
    "ml.m5.16xlarge": InstanceFacts(64, 256, 0, 0, None),
    "ml.m5.24xlarge": InstanceFacts(96, 384, 0, 0, None),
    "ml.t3.medium": InstanceFacts(2, 4, 0, 0, None),
    "ml.t3.large": InstanceFacts(2, 8, 0, 0, None),
    "ml.t3.xlarge": InstanceFacts(4, 16, 0, 0, None),
    "ml.t3.2xlarge": InstanceFacts(8, 32, 0, 0, None),
    "ml.g6.xlarge": InstanceFacts(4, 16, 1, 0, "L4"),
    "ml.g6.2xlarge": InstanceFacts(8, 32, 1, 0, "L4"),
    "ml.g6.4xlarge": InstanceFacts(16, 64, 1, 0, "L4"),
    "ml.g6.8xlarge": InstanceFacts(32, 128, 1, 1, "L4"),
    "ml.g6.16xlarge": InstanceFacts(64, 256, 1, 1, "L4"),
    "ml.g6.12xlarge": InstanceFacts(48, 192, 4, 1, "L4"),
    "ml.g6.24xlarge": InstanceFacts(96, 384, 4, 1, "L4"),
    "ml.g6.48xlarge": InstanceFacts(192, 768, 8, 1, "L4"),
    "ml.gr6.4xlarge": InstanceFacts(16, 128, 1, 0, "L4"),
    "ml.gr6.8xlarge": InstanceFacts(32, 256, 1, 1, "L4"),
    "ml.g6e.xlarge": InstanceFacts(4, 32, 1, 0, "L40S"),
    "ml.g6e.2xlarge": InstanceFacts(8, 64, 1, 0, "L40S"),
    "ml.g6e.4xlarge": InstanceFacts(16, 128, 1, 0, "L40S"),
    "ml.g6e.8xlarge": InstanceFacts(32, 256, 1, 1, "L40S"),
    "ml.g6e.16xlarge": InstanceFacts(64, 512, 1, 1, "L40S"),
    "ml.g6e.12xlarge": InstanceFacts(48, 384, 4, 1, "L40S"),
    "ml.g6e.24xlarge": InstanceFacts(96, 768, 4, 2, "L40S"),
    "ml.g6e.48xlarge": InstanceFacts(192, 1536, 8, 4, "L40S"),
    "ml.p5e.48xlarge": InstanceFacts(192, 2048, 8, 32, "H200"),
    "ml.p5en.48xlarge": InstanceFacts(192, 2048, 8, 16, "H200"),
    "ml.p6-b200.48xlarge": InstanceFacts(192, 2048, 8, 8, "B200"),
    "ml.trn2.3xlarge": InstanceFacts(12, 128, 0, 1, None),
    "ml.trn2.48xlarge": InstanceFacts(192, 2048, 0, 16, None),
    "ml.c6i.large": InstanceFacts(2, 4, 0, 0, None),
    "ml.c6i.xlarge": InstanceFacts(4, 8, 0, 0, None),
    "ml.c6i.2xlarge": InstanceFacts(8, 16, 0, 0, None),
    "ml.c6i.4xlarge": InstanceFacts(16, 32, 0, 0, None),
    "ml.c6i.8xlarge": InstanceFacts(32, 64, 0, 0, None),
    "ml.c6i.12xlarge": InstanceFacts(48, 96, 0, 0, None),
    "ml.c6i.16xlarge": InstanceFacts(64, 128, 0, 0, None),
    "ml.c6i.24xlarge": InstanceFacts(96, 192, 0, 0, None),
    "ml.c6i.32xlarge": InstanceFacts(128, 256, 0, 1, None),
    "ml.m6i.large": InstanceFacts(2, 8, 0, 0, None),
    "ml.m6i.xlarge": InstanceFacts(4, 16, 0, 0, None),
    "ml.m6i.2xlarge": InstanceFacts(8, 32, 0, 0, None),
    "ml.m6i.4xlarge": InstanceFacts(16, 64, 0, 0, None),
    "ml.m6i.8xlarge": InstanceFacts(32, 128, 0, 0, None),
    "ml.m6i.12xlarge": InstanceFacts(48, 192, 0, 0, None),
    "ml.m6i.16xlarge": InstanceFacts(64, 256, 0, 0, None),
    "ml.m6i.24xlarge": InstanceFacts(96, 384, 0, 0, None),
    "ml.m6i.32xlarge": InstanceFacts(128, 512, 0, 1, None),
    "ml.r6i.large": InstanceFacts(2, 16, 0, 0, None),
    "ml.r6i.xlarge": InstanceFacts(4, 32, 0, 0, None),
    "ml.r6i.2xlarge": InstanceFacts(8, 64, 0, 0, None),
    "ml.r6i.4xlarge": InstanceFacts(16, 128, 0, 0, None),
    "ml.r6i.8xlarge": InstanceFacts(32, 256, 0, 0, None),
    "ml.r6i.12xlarge": InstanceFacts(48, 384, 0, 0, None),
    "ml.r6i.16xlarge": InstanceFacts(64, 512, 0, 0, None),
    "ml.r6i.24xlarge": InstanceFacts(96, 768, 0, 0, None),
    "ml.r6i.32xlarge": InstanceFacts(128, 1024, 0, 1, None),
    "ml.i3en.large": InstanceFacts(2, 16, 0, 0, None),
    "ml.i3en.xlarge": InstanceFacts(4, 32, 0, 0, None),
    "ml.i3en.2xlarge": InstanceFacts(8, 64, 0, 0, None),
    "ml.i3en.3xlarge": InstanceFacts(12, 96, 0, 0, None),
    "ml.i3en.6xlarge": InstanceFacts(24, 192, 0, 0, None),
    "ml.i3en.12xlarge": InstanceFacts(48, 384, 0, 1, None),
    "ml.i3en.24xlarge": InstanceFacts(96, 768, 0, 1, None),
    "ml.m7i.large": InstanceFacts(2, 8, 0, 0, None),
    "ml.m7i.xlarge": InstanceFacts(4, 16, 0, 0, None),
    "ml.m7i.2xlarge": InstanceFacts(8, 32, 0, 0, None),
    "ml.m7i.4xlarge": InstanceFacts(16, 64, 0, 0, None),
    "ml.m7i.8xlarge": InstanceFacts(32, 128, 0, 0, None),
    "ml.m7i.12xlarge": InstanceFacts(48, 192, 0, 0, None),
    "ml.m7i.16xlarge": InstanceFacts(64, 256, 0, 0, None),
    "ml.m7i.24xlarge": InstanceFacts(96, 384, 0, 0, None),
    "ml.m7i.48xlarge": InstanceFacts(192, 768, 0, 1, None),
    "ml.r7i.large": InstanceFacts(2, 16, 0, 0, None),
    "ml.r7i.xlarge": InstanceFacts(4, 32, 0, 0, None),
    "ml.r7i.2xlarge": InstanceFacts(8, 64, 0, 0, None),
    "ml.r7i.4xlarge": InstanceFacts(16, 128, 0, 0, None),
    "ml.r7i.8xlarge": InstanceFacts(32, 256, 0, 0, None),
    "ml.r7i.12xlarge": InstanceFacts(48, 384, 0, 0, None),
    "ml.r7i.16xlarge": InstanceFacts(64, 512, 0, 0, None),
    "ml.r7i.24xlarge": InstanceFacts(96, 768, 0, 0, None),
    "ml.r7i.48xlarge": InstanceFacts(192, 1536, 0, 1, None),
    "ml.r5d.16xlarge": InstanceFacts(64, 512, 0, 0, None),
    "ml.g7e.2xlarge": InstanceFacts(8, 64, 1, 0, "RTX PRO 6000 Blackwell"),
    "ml.g7e.4xlarge": InstanceFacts(16, 128, 1, 0, "RTX PRO 6000 Blackwell"),
    "ml.g7e.8xlarge": InstanceFacts(32, 256, 1, 1, "RTX PRO 6000 Blackwell"),
    "ml.g7e.12xlarge": InstanceFacts(48, 512, 2, 1, "RTX PRO 6000 Blackwell"),
    "ml.g7e.24xlarge": InstanceFacts(96, 1024, 4, 2, "RTX PRO 6000 Blackwell"),
    "ml.g7e.48xlarge": InstanceFacts(192, 2048, 8, 4, "RTX PRO 6000 Blackwell"),
    "ml.p6-b300.48xlarge": InstanceFacts(192, 4096, 8, 16, "B300"),
    "ml.g4dn.xlarge": InstanceFacts(4, 16, 1, 0, "T4"),
    "ml.g4dn.2xlarge": InstanceFacts(8, 32, 1, 0, "T4"),
    "ml.g4dn.4xlarge": InstanceFacts(16, 64, 1, 0, "T4"),
    "ml.g4dn.8xlarge": InstanceFacts(32, 128, 1, 1, "T4"),
    "ml.g4dn.12xlarge": InstanceFacts(48, 192, 4, 1, "T4"),
    "ml.g4dn.16xlarge": InstanceFacts(64, 256, 1, 1, "T4"),
    "ml.c6a.large": InstanceFacts(2, 4, 0, 0, None),
    "ml.c6a.xlarge": InstanceFacts(4, 8, 0, 0, None),
    "ml.c6a.2xlarge": InstanceFacts(8, 16, 0, 0, None),
    "ml.c6a.4xlarge": InstanceFacts(16, 32, 0, 0, None),
    "ml.c6a.8xlarge": InstanceFacts(32, 64, 0, 0, None),
    "ml.c6a.12xlarge": InstanceFacts(48, 96, 0, 0, None),
    "ml.c6a.16xlarge": InstanceFacts(64, 128, 0, 0, None),
    "ml.c6a.24xlarge": InstanceFacts(96, 192, 0, 0, None),
    "ml.c6a.32xlarge": InstanceFacts(128, 256, 0, 1, None),
    "ml.c6a.48xlarge": InstanceFacts(192, 384, 0, 1, None),
    "ml.m6a.large": InstanceFacts(2, 8, 0, 0, None),
    "ml.m6a.xlarge": InstanceFacts(4, 16, 0, 0, None),
    "ml.m6a.2xlarge": InstanceFacts(8, 32, 0, 0, None),
    "ml.m6a.4xlarge": InstanceFacts(16, 64, 0, 0, None),
    "ml.m6a.8xlarge": InstanceFacts(32, 128, 0, 0, None),
    "ml.m6a.12xlarge": InstanceFacts(48, 192, 0, 0, None),
    "ml.m6a.16xlarge": InstanceFacts(64, 256, 0, 0, None),
    "ml.m6a.24xlarge": InstanceFacts(96, 384, 0, 0, None),
    "ml.m6a.32xlarge": InstanceFacts(128, 512, 0, 1, None),
    "ml.m6a.48xlarge": InstanceFacts(192, 768, 0, 1, None),
}

ARM64_TYPES = frozenset(
    {"ml.p6e-gb200.36xlarge"}
    | {
        f"ml.{family}.{size}"
        for family in ("c6g", "c7g", "c8g", "m6g", "m7g", "m8g")
        for size in ("medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")
    }
    | {f"ml.{family}.{size}" for family in ("c8g", "m8g") for size in ("24xlarge", "48xlarge")}
)


class UnknownInstanceTypeError(ValueError):
    """An instance type the capacity model has no facts for."""


def instance_facts(instance_type: str) -> InstanceFacts:
    """The facts of `instance_type`, or an error that says why there are none."""
    facts = INSTANCE_FACTS.get(instance_type)
    if facts is not None:
        return facts
    if instance_type in ARM64_TYPES:
        raise UnknownInstanceTypeError(
            f"{instance_type} is an arm64 instance type; the Ray image is built for linux/amd64"
        )
    raise UnknownInstanceTypeError(
        f"{instance_type} is not in the instance facts table (config/instance_types.py), so the Ray pod "
        "sizes cannot be derived or checked; add its vCPUs, memory, GPUs and EFA devices there"
    )


def known_gpus(instance_type: str) -> int:
    """NVIDIA GPUs of `instance_type`; 0 for a type the table lacks (sizing reports those separately)."""
    facts = INSTANCE_FACTS.get(instance_type)
    return facts.gpus if facts else 0
