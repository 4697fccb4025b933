#!/usr/bin/env bash
# Installs what vcstor needs on a Debian machine, idempotently: Debian packages (only the
# missing ones), node modules (only when package-lock.json changed), then a clean build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Programs the agents drive and the tests run for real.
PACKAGES=(
  iproute2 util-linux e2fsprogs openssl   # namespaces, veth, tc; losetup, nsenter; mkfs; test PKI
  tgt libiscsi-bin                        # user-space iSCSI target, libiscsi initiator tools
  nfs-ganesha nfs-ganesha-vfs rpcbind     # user-space NFS server (v3 needs rpcbind)
  libnfs-utils                            # nfs-ls, nfs-cp: a user-space NFS client for tests
  nats-server                             # progress and results
  python3-grpcio python3-protobuf         # an outside gRPC client for the tests
  bonnie++ postmark fio                   # the benchmarks the guest agent runs
  chromium                                # the report is looked at in headless Chromium by a test
  qemu-system-x86 qemu-block-extra qemu-utils  # qemu-storage-daemon: user-space iSCSI/NFS initiator; qemu-img
  xen-utils-4.17                          # xl's own parser checks the Xen configs (xl -N, no hypervisor)
  gcc libc6-dev                           # builds the test shim that lets xl -N run without Xen
  pkg-config libnfs-dev libfuse3-dev      # builds vcstor-nfs-fuse (scripts/build-native.sh): NFSv3 directory mounts in user space
  lvm2                                    # the LVM volume driver, run for real on a loop device
  debootstrap                             # the VM tier's Debian image (lab up --vm)
  glusterfs-server glusterfs-client       # parallel-fs: glusterd + gluster CLI on storage hosts, the FUSE client on guests
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ "$(cat node_modules/.vcstor-lock-sum 2>/dev/null)" != "$lock_sum" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.vcstor-lock-sum
fi

rm -rf dist
npm run --silent build
chmod +x dist/cli/cli.js
