"""Typed, validated configuration of the app: the one object every stack, construct and chart reads."""

from .app import AppConfig, EnvConfig, PodSize
from .eks import EksConfig
from .hyperpod import HyperPodConfig, InstanceGroupConfig
from .instance_types import InstanceFacts, instance_facts
from .loader import CONFIG_FILE_KEY, ConfigError, load_config
from .network import NetworkConfig
from .ray import KubeRayConfig, RayConfig, WorkerGroupConfig
from .storage import StorageConfig

__all__ = [
    "CONFIG_FILE_KEY",
    "AppConfig",
    "ConfigError",
    "EksConfig",
    "EnvConfig",
    "HyperPodConfig",
    "InstanceFacts",
    "InstanceGroupConfig",
    "KubeRayConfig",
    "NetworkConfig",
    "PodSize",
    "RayConfig",
    "StorageConfig",
    "WorkerGroupConfig",
    "instance_facts",
    "load_config",
]
