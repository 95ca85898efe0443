#!/usr/bin/env bash
# Makes the dependency folder that scripts/gpu_check.sh builds prom with on a GPU machine that has
# PyTorch but none of Debian's packages: the small libraries prom needs besides LibTorch (yaml-cpp,
# spdlog, fmt, CLI11, nlohmann-json, Catch2), as this machine's Debian packages, extracted.
#
# usage: scripts/make_gpu_deps.sh OUT_DIR      (runs here, on Debian, with apt; no root needed)
# OUT_DIR gets:
#   debs/                       the downloaded .deb files (a second run reuses them)
#   usr/include, usr/lib/..., usr/share/cmake/...  the packages' files (dpkg-deb -x)
#   prom-gpu-deps.txt           the manifest gpu_check.sh reads: arch, multiarch triplet, release,
#                               then one "package version" line a package
# Copy OUT_DIR to the GPU machine (it is relocatable: the packages' CMake files find their headers
# and libraries relative to themselves) and run scripts/gpu_check.sh OUT_DIR there.
set -euo pipefail
die() { echo "make_gpu_deps: $1" >&2; exit "${2:-1}"; }

[[ $# -eq 1 && -n "$1" && "$1" != -* ]] || die "usage: scripts/make_gpu_deps.sh OUT_DIR" 2
out=$1
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  die "needs apt-get and dpkg-deb (run it on Debian)" 1

# The -dev packages, then the "lib..." packages they depend on: the runtime libraries (libyaml-cpp0.7,
# libfmt9, ... on Debian 12) and, on Debian 13, libcatch2-dev (catch2 is only its wrapper there).
dev=(libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev catch2)
mapfile -t runtime < <(apt-cache depends --no-recommends --no-suggests "${dev[@]}" 2>/dev/null |
  awk '$1 == "Depends:" && $2 ~ /^lib/ { print $2 }' | sort -u | grep -vxF -f <(printf '%s\n' "${dev[@]}"))
((${#runtime[@]} >= 3)) ||
  die "apt-cache knows no runtime libraries for ${dev[*]} (run apt-get update first?)" 1
packages=("${dev[@]}" "${runtime[@]}")

# The versions apt would install, read once: PACKAGE -> VERSION.
declare -A candidate
while read -r p v; do candidate[$p]=$v; done < <(apt-cache policy "${packages[@]}" |
  awk '/^[^ ]/ { sub(/:$/, ""); p = $1 } /Candidate:/ { print p, $2 }')

mkdir -p "$out/debs" || die "$out: cannot create the folder" 1
out=$(cd "$out" && pwd)
# apt-get download names a file PACKAGE_VERSION_ARCH.deb, with the epoch's ':' as %3a.
deb_glob() { echo "$out/debs/${1}_${2/:/%3a}_*.deb"; }
# Download what is not there yet (apt-get download writes into the current folder; as root, apt
# would first try its _apt user, which cannot write here, and warn).
sandbox=()
[[ $(id -u) -ne 0 ]] || sandbox=(-o APT::Sandbox::User=root)
want=()
for p in "${packages[@]}"; do
  version=${candidate[$p]:-}
  [[ -n "$version" && "$version" != "(none)" ]] || die "$p: no candidate version in apt's lists" 1
  compgen -G "$(deb_glob "$p" "$version")" >/dev/null || want+=("$p=$version")
done
if ((${#want[@]})); then
  (cd "$out/debs" && apt-get download -qq "${sandbox[@]}" "${want[@]}") || die "apt-get download ${want[*]} failed" 1
fi

# Extract every package afresh into usr/ (nothing stale from an older version stays).
rm -rf "$out/usr"
manifest="$out/prom-gpu-deps.txt.tmp"
{
  echo "arch $(dpkg --print-architecture)"
  echo "multiarch $(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"
  echo "release $( (. /etc/os-release && echo "${VERSION_CODENAME:-unknown}") )"
} >"$manifest"
for p in "${packages[@]}"; do
  version=${candidate[$p]}
  deb=$(compgen -G "$(deb_glob "$p" "$version")" | head -1)
  dpkg-deb -x "$deb" "$out" || die "$deb: dpkg-deb -x failed" 1
  echo "package $p $version" >>"$manifest"
done
rm -rf "$out/usr/share/doc" "$out/usr/share/lintian"
mv "$manifest" "$out/prom-gpu-deps.txt"
echo "make_gpu_deps: ${#packages[@]} packages in $out ($(du -sh "$out/usr" | cut -f1) extracted); copy it to the GPU machine and run scripts/gpu_check.sh $out"
