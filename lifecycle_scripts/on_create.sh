#!/bin/bash
# HyperPod lifecycle script for EKS-orchestrated nodes (OnCreate): runs once as root on every new or
# replaced node, before the node joins the cluster. HyperPod marks the node failed if this exits non-zero,
# so only real misconfiguration fails it; optional steps log and continue.
#
# What it does, each step safe to run again:
#   1. System settings for Kubernetes density and EFA/NCCL collectives (sysctl.d drop-in).
#   2. Puts containerd's and kubelet's state on the node's fast, large disk: the instance-store NVMe that the
#      HyperPod image mounts itself at /opt/dlami/nvme (RAID 0 over all devices) when the instance has one,
#      else the secondary EBS volume HyperPod mounts at /opt/sagemaker (InstanceStorageConfigs). The image
#      mounts the NVMe early in boot but not always before this script runs: wait for it (up to 120 s, as
#      AWS's own lifecycle scripts do) rather than format the disks here and race it. Bind mounts keep the
#      stock containerd configuration untouched on both AL2 and AL2023 images.
# Bash 4.2 compatible under set -u (AL2): no empty-array expansions without a guard.
set -Eeuo pipefail  # -E: the ERR trap also fires inside functions

readonly LOG_DIR=/var/log/provision
readonly LOG_FILE="${LOG_DIR}/provisioning.log"
readonly NVME_MOUNT=/opt/dlami/nvme
readonly EBS_MOUNT=/opt/sagemaker
readonly SYSCTL_FILE=/etc/sysctl.d/99-hyperpod-ray.conf
readonly STATE_DIRS=(/var/lib/containerd /var/lib/kubelet)
readonly MOUNT_WAIT_SECONDS=120
readonly MOUNT_POLL_SECONDS=5

log() {
  printf '%s [on_create] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

on_error() {
  log "failed at line $1; see $LOG_FILE"
  # Give the log agent time to upload the failure before HyperPod recycles the node.
  sync
  sleep 30
}
trap 'on_error $LINENO' ERR

configure_sysctls() {
  # Many pods per node (VPC CNI gives each an ENI address), inotify-hungry agents, Ray object store
  # and NCCL/EFA: larger neighbour tables, watch limits and map counts; NUMA balancing off, as NVIDIA
  # recommends for GPU collectives (page migration stalls them).
  cat >"$SYSCTL_FILE" <<'EOF'
fs.inotify.max_user_instances = 8192
fs.inotify.max_user_watches = 1048576
vm.max_map_count = 1048576
kernel.numa_balancing = 0
net.core.somaxconn = 32768
net.core.rmem_max = 67108864
net.core.wmem_max = 67108864
net.ipv4.neigh.default.gc_thresh1 = 8192
net.ipv4.neigh.default.gc_thresh2 = 32768
net.ipv4.neigh.default.gc_thresh3 = 65536
EOF
  # A key the running kernel lacks (kernel.numa_balancing on a single-node VM) must not fail the node.
  sysctl --system >/dev/null || log "some sysctl keys were not applied (kernel without them)"
  log "sysctl settings written to $SYSCTL_FILE"
}

has_instance_store() {
  # NVMe instance-store disks report this model string; EBS volumes report another.
  local model
  for model in /sys/block/nvme*n1/device/model; do
    [[ -r "$model" ]] || continue
    if [[ "$(cat "$model")" == *"Instance Storage"* ]]; then
      return 0
    fi
  done
  return 1
}

wait_for_nvme_mount() {
  # Only instances with an instance store get the image's NVMe mount; waiting on others would only cost time.
  if ! has_instance_store; then
    log "no instance-store NVMe on this instance"
    return 0
  fi
  local waited=0
  until mountpoint -q "$NVME_MOUNT"; do
    if ((waited >= MOUNT_WAIT_SECONDS)); then
      log "$NVME_MOUNT not mounted after ${MOUNT_WAIT_SECONDS}s; using $EBS_MOUNT if it is mounted"
      return 0
    fi
    sleep "$MOUNT_POLL_SECONDS"
    waited=$((waited + MOUNT_POLL_SECONDS))
  done
  log "$NVME_MOUNT mounted (waited ${waited}s)"
}

state_disk() {
  # The disk for container images and kubelet state, or nothing when neither is mounted.
  local mount
  for mount in "$NVME_MOUNT" "$EBS_MOUNT"; do
    if mountpoint -q "$mount"; then
      echo "$mount"
      return 0
    fi
  done
}

bind_state_dirs() {
  local disk=$1 unit dir target
  local -a restart=()
  # Moving a running containerd's root underneath it corrupts its state: stop, move, start again.
  for unit in kubelet containerd; do
    if systemctl is-active --quiet "$unit"; then
      restart=("$unit" ${restart[@]+"${restart[@]}"})
      systemctl stop "$unit"
    fi
  done
  for dir in "${STATE_DIRS[@]}"; do
    target="${disk}/$(basename "$dir")"
    if mountpoint -q "$dir"; then
      log "$dir already mounted; leaving it"
      continue
    fi
    # State a previous image left on a disk that survived (a reused EBS volume, an AL2 -> AL2023 change)
    # does not match this image's containerd and kubelet: start from what this image ships.
    if [[ -e "$target" ]]; then
      log "clearing stale $target"
      rm -rf --one-file-system "$target"
    fi
    mkdir -p "$dir" "$target"
    # Keep what the image pre-pulled (pause image, add-on images) before mounting over it.
    cp -a "${dir}/." "${target}/"
    grep -qs "^${target} ${dir} " /etc/fstab || echo "${target} ${dir} none bind,nofail 0 0" >>/etc/fstab
    mount --bind "$target" "$dir"
    log "$dir now on $target"
  done
  for unit in ${restart[@]+"${restart[@]}"}; do
    systemctl start "$unit"
  done
}

main() {
  mkdir -p "$LOG_DIR"
  # Everything below also lands in the provisioning log, which HyperPod ships to CloudWatch Logs.
  exec > >(tee -a "$LOG_FILE") 2>&1
  log "start on $(hostname)"
  configure_sysctls
  wait_for_nvme_mount
  local disk
  disk=$(state_disk)
  if [[ -n "$disk" ]]; then
    bind_state_dirs "$disk"
  else
    log "neither $NVME_MOUNT nor $EBS_MOUNT is mounted: containerd and kubelet stay on the root volume"
  fi
  log "done"
}

# Run when executed (HyperPod runs it as a file); sourcing only defines the functions (the tests do).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
