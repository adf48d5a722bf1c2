"""Typed, validated configuration of the app: the one object every stack, construct and chart reads."""

from .app import AppConfig, EnvConfig
from .eks import EksConfig
from .hyperpod import HyperPodConfig, InstanceGroupConfig
from .instance_types import accelerators
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
    "InstanceGroupConfig",
    "KubeRayConfig",
    "NetworkConfig",
    "RayConfig",
    "StorageConfig",
    "WorkerGroupConfig",
    "accelerators",
    "load_config",
]
