#!/bin/bash
# HyperPod lifecycle script for EKS-orchestrated nodes (OnCreate): runs once as root on every new or
# replaced node, before the node joins the cluster. HyperPod marks the node failed if this exits non-zero,
# so only real misconfiguration fails it; optional steps log and continue.
#
# What it does, each step safe to run again:
#   1. System settings for Kubernetes density and EFA/NCCL collectives (sysctl.d drop-in).
#   2. Puts containerd's and kubelet's state on the node's fast, large disk: the instance-store NVMe
#      (RAID 0 over all devices, mounted at /opt/dlami/nvme) when the instance has one, else the
#      secondary EBS volume HyperPod mounts at /opt/sagemaker (InstanceStorageConfigs). Bind mounts keep
#      the stock containerd configuration untouched on both AL2 and AL2023 images.
set -Eeuo pipefail  # -E: the ERR trap also fires inside functions

readonly LOG_DIR=/var/log/provision
readonly LOG_FILE="${LOG_DIR}/provisioning.log"
readonly NVME_MOUNT=/opt/dlami/nvme
readonly EBS_MOUNT=/opt/sagemaker
readonly SYSCTL_FILE=/etc/sysctl.d/99-hyperpod-ray.conf
readonly STATE_DIRS=(/var/lib/containerd /var/lib/kubelet)

mkdir -p "$LOG_DIR"
# Everything below also lands in the provisioning log, which HyperPod ships to CloudWatch Logs.
exec > >(tee -a "$LOG_FILE") 2>&1

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

instance_store_devices() {
  # NVMe instance-store disks that carry no filesystem yet; EBS volumes report another model string.
  local dev
  for dev in /dev/nvme*n1; do
    [[ -b "$dev" ]] || continue
    if [[ "$(cat "/sys/block/${dev#/dev/}/device/model" 2>/dev/null)" == *"Instance Storage"* ]] &&
      ! blkid "$dev" >/dev/null 2>&1; then
      echo "$dev"
    fi
  done
}

prepare_nvme() {
  # Images usually mount the instance store themselves; only format it when nobody has.
  if mountpoint -q "$NVME_MOUNT"; then
    log "$NVME_MOUNT already mounted"
    return 0
  fi
  local devices
  mapfile -t devices < <(instance_store_devices)
  if ((${#devices[@]} == 0)); then
    log "no unused instance-store NVMe devices"
    return 0
  fi
  local target="${devices[0]}"
  if ((${#devices[@]} > 1)); then
    if ! command -v mdadm >/dev/null; then
      log "mdadm missing: using only ${target} of ${#devices[@]} NVMe devices"
    else
      target=/dev/md/hyperpod-nvme
      mdadm --create "$target" --run --level=0 --raid-devices="${#devices[@]}" "${devices[@]}"
    fi
  fi
  mkfs.xfs -f "$target"
  mkdir -p "$NVME_MOUNT"
  mount -o noatime "$target" "$NVME_MOUNT"
  log "formatted ${devices[*]} as $target and mounted it at $NVME_MOUNT"
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
  local disk=$1 restart=() unit dir target
  # Moving a running containerd's root underneath it corrupts its state: stop, move, start again.
  for unit in kubelet containerd; do
    if systemctl is-active --quiet "$unit"; then
      restart=("$unit" "${restart[@]}")
      systemctl stop "$unit"
    fi
  done
  for dir in "${STATE_DIRS[@]}"; do
    target="${disk}/$(basename "$dir")"
    if mountpoint -q "$dir"; then
      log "$dir already mounted; leaving it"
      continue
    fi
    mkdir -p "$dir" "$target"
    # Keep what the image pre-pulled (pause image, add-on images) before mounting over it.
    cp -a "${dir}/." "${target}/"
    grep -qs "^${target} ${dir} " /etc/fstab || echo "${target} ${dir} none bind,nofail 0 0" >>/etc/fstab
    mount --bind "$target" "$dir"
    log "$dir now on $target"
  done
  for unit in "${restart[@]}"; do
    systemctl start "$unit"
  done
}

main() {
  log "start on $(hostname)"
  configure_sysctls
  prepare_nvme
  local disk
  disk=$(state_disk)
  if [[ -n "$disk" ]]; then
    bind_state_dirs "$disk"
  else
    log "neither $NVME_MOUNT nor $EBS_MOUNT is mounted: containerd and kubelet stay on the root volume"
  fi
  log "done"
}

main "$@"
