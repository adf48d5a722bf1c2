"""On-demand list prices for the deploy summary's estimate: a small table with its source, region and date.

An estimate, not a bill: prices change, differ by region, and savings plans, training plans and reserved
capacity change them again. Check https://aws.amazon.com/sagemaker-ai/pricing/ (HyperPod tab) before
relying on a number. HyperPod bills each instance as SageMaker usage `<region>-Cluster:ml.<type>`.
"""

PRICE_REGION = "us-west-2"
PRICE_DATE = "2026-11"
PRICE_SOURCE = (
    "SageMaker AI on-demand ml.* rates for us-west-2 from a public price table found 2026-11 (not AWS's "
    "HyperPod tab: verify at https://aws.amazon.com/sagemaker-ai/pricing/); FSx and EKS: their pricing pages"
)

# USD per instance-hour.
INSTANCE_HOURLY_USD: dict[str, float] = {
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.g5.xlarge": 1.41,
    "ml.g5.2xlarge": 1.52,
    "ml.g5.4xlarge": 2.03,
    "ml.g5.8xlarge": 3.06,
    "ml.g5.12xlarge": 7.09,
    "ml.g5.24xlarge": 10.18,
    "ml.g5.48xlarge": 20.36,
    "ml.g6.xlarge": 1.127,
    "ml.g6.2xlarge": 1.222,
    "ml.g6.4xlarge": 1.654,
    "ml.g6.12xlarge": 5.752,
    "ml.g6.24xlarge": 8.344,
    "ml.g6.48xlarge": 16.688,
    "ml.p4d.24xlarge": 25.251286,
    "ml.p5.48xlarge": 63.296,
}
# FSx for Lustre PERSISTENT_2 SSD, USD per GB-month by throughput tier (MB/s/TiB); a month is 730 hours.
FSX_GB_MONTH_USD: dict[int, float] = {125: 0.145, 250: 0.21, 500: 0.34, 1000: 0.60}
HOURS_PER_MONTH = 730
EKS_CLUSTER_HOURLY_USD = 0.10  # standard support; extended support (an older minor) costs 0.60
NAT_GATEWAY_HOURLY_USD = 0.045  # plus 0.045 per GB processed, not estimated here
# ElastiCache for Valkey on-demand nodes (the GCS store), USD per node-hour: Valkey is priced 20 % below
# Redis OSS (cache.t4g.small Redis OSS: 0.032). From memory of the ElastiCache pricing page, not re-checked
# here: verify at https://aws.amazon.com/elasticache/pricing/.
CACHE_NODE_HOURLY_USD: dict[str, float] = {"cache.t4g.small": 0.0256, "cache.t4g.medium": 0.0512}


def instance_hourly(instance_type: str) -> float | None:
    """USD per hour of one instance, or None when the table does not know the type."""
    return INSTANCE_HOURLY_USD.get(instance_type)


def fsx_hourly(capacity_gib: int, throughput_per_tib: int) -> float | None:
    """USD per hour of a PERSISTENT_2 file system (GiB counted as GB), or None for an unknown tier."""
    rate = FSX_GB_MONTH_USD.get(throughput_per_tib)
    return None if rate is None else capacity_gib * rate / HOURS_PER_MONTH


def cache_node_hourly(node_type: str) -> float | None:
    """USD per hour of one ElastiCache for Valkey node, or None when the table does not know the type."""
    return CACHE_NODE_HOURLY_USD.get(node_type)
