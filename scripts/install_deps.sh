#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/packages.txt (the one place the list lives) for this
# release: Debian 12 "bookworm" or 13 "trixie", read from VERSION_CODENAME in /etc/os-release
# (PROM_DEBIAN_RELEASE overrides it, e.g. trixie's names on a newer release).
# Idempotent: when everything is installed it only checks, in about a second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
list="$here/packages.txt"

release=${PROM_DEBIAN_RELEASE:-$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)}
# The releases packages.txt names: every "@release" tag in it.
mapfile -t known < <(sed 's/#.*//' "$list" | grep -oE '@[a-z]+' | tr -d @ | sort -u)
if [[ " ${known[*]} " != *" $release "* ]]; then
  echo "install_deps: Debian release '${release:-unknown}' (VERSION_CODENAME in /etc/os-release) is not one $list lists (${known[*]}); set PROM_DEBIAN_RELEASE to the nearest of them" >&2
  exit 2
fi

# Untagged lines are for every release; a tagged line only for the releases it names.
mapfile -t packages < <(awk -v rel="@$release" '
  { sub(/#.*/, "") } NF == 0 { next }
  NF == 1 { print $1; next }
  { for (i = 2; i <= NF; i++) if ($i == rel) { print $1; next } }' "$list")

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#packages[@]} Debian packages for $release present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install_deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install_deps: installing for $release: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
