#!/usr/bin/env bash
# Runs ./scripts/test.sh in a Debian 13 "trixie" root filesystem, as a new user of Debian 13 would:
# a fresh copy of the checkout, the Debian 13 packages installed by scripts/install_deps.sh, a build,
# then the whole CTest suite (the Python cross-checks with Debian 13's python3-torch and torchvision).
#
# usage: sudo scripts/test_debian13.sh [CTEST ARGS...]
# Environment:
#   PROM_DEBIAN13_ROOT    the root filesystem (default /var/cache/prom/debian13-root): made with
#                         mmdebstrap when absent, reused when present; the packages installed into
#                         it stay, so a second run installs nothing. Delete it to start from scratch.
#   PROM_DEBIAN13_MIRROR  the Debian archive (default: the one this machine's apt uses)
#   PROM_DEBIAN13_SOURCE  head (default): the committed HEAD, as a fresh clone has it;
#                         worktree: the tracked and untracked-but-not-ignored files as they are now
#   PROM_BUILD_JOBS (default 2), PROM_TEST_JOBS (default 2), PROM_DEBIAN13_NICE (default 10: the
#                         build and tests yield to other work on the machine)
# Needs root (mmdebstrap, mount, chroot). /proc, /sys, /dev, /dev/pts and /dev/shm are mounted
# into the root while it runs and always unmounted: on success, failure, Ctrl-C or SIGTERM.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${PROM_DEBIAN13_ROOT:-/var/cache/prom/debian13-root}
source_mode=${PROM_DEBIAN13_SOURCE:-head}
say() { echo "test_debian13: $*"; }
die() { echo "test_debian13: $1" >&2; exit "${2:-1}"; }

[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap, mount and chroot): run it with sudo" 2
[[ "$source_mode" == head || "$source_mode" == worktree ]] ||
  die "PROM_DEBIAN13_SOURCE must be head or worktree, not '$source_mode'" 2
[[ "$root" == /* && "$root" != / ]] || die "PROM_DEBIAN13_ROOT must be an absolute path other than /: '$root'" 2

# The Debian archive this machine's apt uses (deb822 .sources or one-line sources.list), so the root
# filesystem comes from the same mirror; the security archive is its sibling on the same host.
debian_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  [[ -n "$uri" ]] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  echo "${uri:-http://deb.debian.org/debian}"
}

make_root() {
  if ! command -v mmdebstrap >/dev/null; then  # as a new CI machine: install it from the same archive
    say "installing mmdebstrap"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; } ||
      die "mmdebstrap not found and apt-get could not install it" 1
  fi
  local mirror=${PROM_DEBIAN13_MIRROR:-$(debian_mirror)}
  mirror=${mirror%/}
  say "making the Debian 13 root filesystem in $root from $mirror"
  rm -rf "$root.partial"
  mmdebstrap --quiet --variant=apt --mode=root trixie "$root.partial" \
    "deb $mirror trixie main" "deb $mirror trixie-updates main" \
    "deb ${mirror%/debian}/debian-security trixie-security main" ||
    die "mmdebstrap could not make the Debian 13 root filesystem from $mirror (see above)" 1
  mv "$root.partial" "$root"  # only a complete root filesystem gets the name that is reused
}

# One run at a time per root filesystem: a second would delete the first one's copy of the checkout.
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock -n 9 || die "another test_debian13.sh is using $root (lock $root.lock)" 1

if [[ ! -f "$root/etc/os-release" ]]; then
  make_root
else
  say "reusing the Debian 13 root filesystem in $root"
fi
codename=$(. "$root/etc/os-release" && echo "${VERSION_CODENAME:-}")
[[ "$codename" == trixie ]] || die "$root/etc/os-release: VERSION_CODENAME is '$codename', not trixie (PROM_DEBIAN13_ROOT points elsewhere?)" 2

# Mounts, undone in reverse order on every way out; a process still inside the root when the
# run ends (SIGTERM or Ctrl-C) is ended first, so nothing keeps a mount busy.
mounted=()
child=""
cleanup() {
  local status=$?
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM -- "-$child" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" ||
      echo "test_debian13: could not unmount ${mounted[i]}" >&2
  done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mount_in() {  # mount_in TARGET MOUNT-ARGS...
  mkdir -p "$root$1"
  # A mount left by an earlier run that was killed outright (or by hand) is taken off first, so the
  # root gets fresh ones and this run unmounts exactly what it mounted.
  if mountpoint -q "$root$1"; then
    say "unmounting $root$1, left mounted by an earlier run"
    umount -R "$root$1" 2>/dev/null || umount -R -l "$root$1" || die "$root$1: left mounted and cannot be unmounted" 1
  fi
  mount "${@:2}" "$root$1"
  mounted+=("$root$1")
  mount --make-private "$root$1"  # what is mounted below it (/dev/shm) stays out of the host's tree
}
mount_in /proc -t proc proc
mount_in /sys -t sysfs sysfs
mount_in /dev --bind /dev
mount_in /dev/pts --bind /dev/pts
mount_in /dev/shm -t tmpfs -o mode=1777 tmpfs
cp /etc/resolv.conf "$root/etc/resolv.conf"  # apt inside the root resolves the mirror's name
# The host's trust store too (e.g. a proxy's CA in front of npm's registry, which the ONNX Runtime
# cross-check installs from): node adds NODE_EXTRA_CA_CERTS to its own.
extra_ca=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/prom-host-ca-certificates.crt"
  extra_ca=(NODE_EXTRA_CA_CERTS=/etc/prom-host-ca-certificates.crt)
fi

# A fresh copy of the checkout: no build directory, nothing the last run left.
src=/root/prom
rm -rf "${root:?}$src"
mkdir -p "$root$src"
if [[ "$source_mode" == head ]]; then
  say "copying the committed HEAD ($(git -C "$repo" rev-parse --short HEAD)) to $src"
  git -C "$repo" archive --format=tar HEAD | tar -x -C "$root$src"
else
  say "copying the working tree's tracked and untracked-but-not-ignored files to $src"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
    tar -c --null -T - -f -) | tar -x -C "$root$src"
fi

# Inside: a login-like environment for root (HOME, PATH, locale), nothing from this shell. Each
# stage is timed; test.sh then runs as the README says (its install and build find nothing to do).
inside=$(cat <<'EOF'
set -uo pipefail
cd /root/prom
t0=$(date +%s)
./scripts/install_deps.sh || exit 1
t1=$(date +%s)
./scripts/build.sh || exit 1
t2=$(date +%s)
./scripts/test.sh "$@"; status=$?
t3=$(date +%s)
echo "stage seconds: install $((t1 - t0)), build $((t2 - t1)), test.sh $((t3 - t2))"
exit $status
EOF
)
started=$(date +%s)
status=0
setsid chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  PROM_BUILD_JOBS="${PROM_BUILD_JOBS:-2}" PROM_TEST_JOBS="${PROM_TEST_JOBS:-2}" "${extra_ca[@]}" \
  nice -n "${PROM_DEBIAN13_NICE:-10}" bash -c "$inside" test_debian13 "$@" 9>&- &
child=$!
wait "$child" || status=$?
child=""

# What was tested: the packages, and what prom itself reports.
say "tested on Debian $(cat "$root/etc/debian_version"):"
chroot "$root" dpkg-query -W -f='  ${Package} ${Version}\n' libtorch-dev libopencv-dev catch2 \
  libyaml-cpp-dev g++ python3-torch python3-torchvision 2>/dev/null || true
if [[ -x "$root$src/build/apps/prom-train" ]]; then
  chroot "$root" "$src/build/apps/prom-train" --version 2>&1 | sed 's/^/  /' || true
fi
say "total $(( $(date +%s) - started )) s; exit status $status"
exit "$status"
