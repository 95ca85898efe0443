#!/usr/bin/env bash
# Runs N copies of a prom binary on this machine as one data-parallel job, the way torchrun does:
#   scripts/launch_local.sh N prom-train --config recipe.yaml [--set ...]
# Each copy gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free
# MASTER_PORT (or the MASTER_PORT already set). The binary is looked up as given, then in build/apps
# next to this script. When one copy fails, the others get SIGTERM (SIGKILL 10 s later if still
# alive); the exit code is the first non-zero one (0 if all succeed). SIGINT/SIGTERM/SIGHUP to the
# launcher are passed on once to every copy (they save a resumable checkpoint), SIGKILL follows 10 s
# later; a second signal sends SIGKILL at once.
#
# How it waits: it polls the copies (kill -0, then `wait PID` for the status bash kept) every 0.1 s.
# `wait -n` is not used: once a child has been reaped it returns no pid, and a loop around it can spin
# forever (seen with every rank failing at once).
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

# Job control: each copy runs in its own process group with SIGINT not ignored, so a terminal's
# Ctrl-C reaches the launcher only, and the launcher passes it on exactly once (prom-train treats a
# second signal as "quit now, no checkpoint").
set -m
pids=()
for ((r = 0; r < n; r++)); do
  RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$prog" "$@" &
  pids+=($!)
done
set +m  # the launcher's own commands (sleep) stay in its group: a Ctrl-C must reach it

declare -A done_pids=()
status=0
remaining=$n
kill_at=  # SECONDS value after which the copies still running get SIGKILL
signals=0

# shellcheck disable=SC2317  # called from the traps and the loop
send() {
  for p in "${pids[@]}"; do
    [ -n "${done_pids[$p]:-}" ] || kill -"$1" "$p" 2>/dev/null
  done
}
# shellcheck disable=SC2317
on_signal() {
  signals=$((signals + 1))
  if [ "$signals" -eq 1 ]; then
    send "$1"
    [ -n "$kill_at" ] || kill_at=$((SECONDS + 10))
  else
    send KILL
  fi
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal TERM' HUP

while [ "$remaining" -gt 0 ]; do
  for p in "${pids[@]}"; do
    [ -z "${done_pids[$p]:-}" ] || continue
    kill -0 "$p" 2>/dev/null && continue  # running (or a zombie bash has not reaped yet)
    wait "$p"
    rc=$?
    done_pids[$p]=1
    remaining=$((remaining - 1))
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
      status=$rc
      send TERM
      # Ranks stuck in a collective may not react to SIGTERM before their timeout.
      [ -n "$kill_at" ] || kill_at=$((SECONDS + 10))
    fi
  done
  [ "$remaining" -gt 0 ] || break
  if [ -n "$kill_at" ] && [ "$SECONDS" -ge "$kill_at" ]; then
    send KILL
  fi
  sleep 0.1
done
exit "$status"
