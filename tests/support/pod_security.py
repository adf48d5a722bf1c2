"""The Pod Security Standards' `baseline` and `restricted` checks, as Pod Security admission applies them to a
pod spec: https://kubernetes.io/docs/concepts/security/pod-security-standards/ (policy version `latest`,
checked against the page's tables for Kubernetes 1.33). Each check returns the problems it finds, named by
the rule as the page names it, so that a test can show one failing copy per rule.

Left out: the Windows-only and Linux-kernel-version-gated details the page lists for `restricted` (they
concern fields this app never sets), and AppArmor annotations (the app uses none; the field form is checked).
"""

from collections.abc import Callable, Iterator
from typing import Any

Pod = dict[str, Any]

# Baseline "Capabilities": what a container may add.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def containers(pod: Pod) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(key) or []


def _contexts(pod: Pod) -> Iterator[tuple[str, dict[str, Any]]]:
    """The pod's securityContext and every container's, each with a name for messages."""
    yield "pod", pod.get("securityContext") or {}
    for container in containers(pod):
        yield container["name"], container.get("securityContext") or {}


def _host_process(pod: Pod) -> list[str]:
    return [
        f"HostProcess: {name}"
        for name, context in _contexts(pod)
        if (context.get("windowsOptions") or {}).get("hostProcess")
    ]


def _host_namespaces(pod: Pod) -> list[str]:
    return [f"Host Namespaces: {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]


def _privileged(pod: Pod) -> list[str]:
    return [f"Privileged Containers: {name}" for name, context in _contexts(pod) if context.get("privileged")]


def _baseline_capabilities(pod: Pod) -> list[str]:
    problems = []
    for name, context in _contexts(pod):
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            problems.append(f"Capabilities: {name} adds {sorted(added - BASELINE_CAPABILITIES)}")
    return problems


def _host_path(pod: Pod) -> list[str]:
    return [f"HostPath Volumes: {v['name']}" for v in pod.get("volumes") or [] if "hostPath" in v]


def _host_ports(pod: Pod) -> list[str]:
    return [
        f"Host Ports: {container['name']}"
        for container in containers(pod)
        for port in container.get("ports") or []
        if port.get("hostPort")
    ]


def _app_armor(pod: Pod) -> list[str]:
    return [
        f"AppArmor: {name}"
        for name, context in _contexts(pod)
        if (context.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost")
    ]


def _selinux(pod: Pod) -> list[str]:
    problems = []
    for name, context in _contexts(pod):
        options = context.get("seLinuxOptions") or {}
        if options.get("type") not in SELINUX_TYPES or options.get("user") or options.get("role"):
            problems.append(f"SELinux: {name}")
    return problems


def _proc_mount(pod: Pod) -> list[str]:
    return [
        f"/proc Mount Type: {name}"
        for name, context in _contexts(pod)
        if context.get("procMount") not in (None, "Default")
    ]


def _baseline_seccomp(pod: Pod) -> list[str]:
    return [
        f"Seccomp: {name}"
        for name, context in _contexts(pod)
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined"
    ]


def _sysctls(pod: Pod) -> list[str]:
    sysctls = (pod.get("securityContext") or {}).get("sysctls") or []
    return [f"Sysctls: {s['name']}" for s in sysctls if s["name"] not in SAFE_SYSCTLS]


def _volume_types(pod: Pod) -> list[str]:
    problems = []
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"Volume Types: {volume['name']} is {sorted(kinds)}")
    return problems


def _privilege_escalation(pod: Pod) -> list[str]:
    return [
        f"Privilege Escalation: {c['name']}"
        for c in containers(pod)
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False
    ]


def _container_or_pod(pod: Pod, container: dict[str, Any], key: str) -> Any:
    """A container's setting, else the pod's (the container's wins, as in the kubelet)."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("securityContext") or {}).get(key)


def _non_root(pod: Pod) -> list[str]:
    return [
        f"Running as Non-root: {c['name']}"
        for c in containers(pod)
        if _container_or_pod(pod, c, "runAsNonRoot") is not True
    ]


def _non_root_user(pod: Pod) -> list[str]:
    return [f"Running as Non-root user: {name}" for name, ctx in _contexts(pod) if ctx.get("runAsUser") == 0]


def _restricted_seccomp(pod: Pod) -> list[str]:
    return [
        f"Seccomp (restricted): {c['name']}"
        for c in containers(pod)
        if (_container_or_pod(pod, c, "seccompProfile") or {}).get("type")
        not in ("RuntimeDefault", "Localhost")
    ]


def _restricted_capabilities(pod: Pod) -> list[str]:
    problems = []
    for c in containers(pod):
        capabilities = (c.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"Capabilities (restricted): {c['name']} does not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"Capabilities (restricted): {c['name']} adds more than NET_BIND_SERVICE")
    return problems


Check = Callable[[Pod], list[str]]
BASELINE: tuple[Check, ...] = (
    _host_process,
    _host_namespaces,
    _privileged,
    _baseline_capabilities,
    _host_path,
    _host_ports,
    _app_armor,
    _selinux,
    _proc_mount,
    _baseline_seccomp,
    _sysctls,
)
RESTRICTED: tuple[Check, ...] = (
    *BASELINE,
    _volume_types,
    _privilege_escalation,
    _non_root,
    _non_root_user,
    _restricted_seccomp,
    _restricted_capabilities,
)
LEVELS: dict[str, tuple[Check, ...]] = {"privileged": (), "baseline": BASELINE, "restricted": RESTRICTED}


def violations(pod: Pod, level: str) -> list[str]:
    """What Pod Security admission at `level` would refuse this pod for (empty: admitted)."""
    return [problem for check in LEVELS[level] for problem in check(pod)]
