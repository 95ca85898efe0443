#!/usr/bin/env bash
# Runs N copies of a prom binary on this machine as one data-parallel job, the way torchrun does:
#   scripts/launch_local.sh N prom-train --config recipe.yaml [--set ...]
# Each copy gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT (or the
# MASTER_PORT already set). The binary is looked up as given, then in build/apps next to this script.
# When one copy fails, the others are stopped; the exit code is the first non-zero one (0 if all
# succeed). SIGINT/SIGTERM are passed on to every copy (they save a resumable checkpoint).
set -u

if [ $# -lt 2 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N BINARY [ARGS...]   (N >= 1 processes on this machine)" >&2
  exit 2
fi
n=$1
shift
prog=$1
shift
if ! command -v "$prog" >/dev/null 2>&1; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [ -x "$here/build/apps/$prog" ]; then
    prog="$here/build/apps/$prog"
  else
    echo "$0: $prog: not found (give a path, or build it into build/apps)" >&2
    exit 2
  fi
fi

port=${MASTER_PORT:-}
if [ -z "$port" ]; then
  # A free port: bind to port 0 and read back what the kernel chose.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null)
  [ -n "$port" ] || port=$((20000 + RANDOM % 20000))
fi

pids=()
for ((r = 0; r < n; r++)); do
  RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$prog" "$@" &
  pids+=($!)
done

# shellcheck disable=SC2317  # called from the traps
forward() {
  for p in "${pids[@]}"; do kill -"$1" "$p" 2>/dev/null; done
}
trap 'forward INT' INT
trap 'forward TERM' TERM

status=0
remaining=$n
declare -A done_pids=()
while [ "$remaining" -gt 0 ]; do
  running=()
  for p in "${pids[@]}"; do [ -n "${done_pids[$p]:-}" ] || running+=("$p"); done
  finished=
  wait -n -p finished "${running[@]}"
  rc=$?
  [ -n "${finished:-}" ] || continue  # interrupted by a trapped signal: wait again
  [ -z "${done_pids[$finished]:-}" ] || continue
  done_pids[$finished]=1
  remaining=$((remaining - 1))
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$rc
    for p in "${pids[@]}"; do
      [ -n "${done_pids[$p]:-}" ] || kill -TERM "$p" 2>/dev/null
    done
    # Ranks stuck in a collective may not react to SIGTERM until their timeout: SIGKILL after 10 s.
    (
      trap 'kill "$s" 2>/dev/null; exit 0' TERM
      sleep 10 &
      s=$!
      wait "$s"
      for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    ) >/dev/null 2>&1 &
    killer=$!
  fi
done
[ -n "${killer:-}" ] && kill "$killer" 2>/dev/null
exit "$status"
