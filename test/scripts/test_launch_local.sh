#!/usr/bin/env bash
# scripts/launch_local.sh must always come back: every rank failing at once, one rank failing while
# the others run, SIGTERM/SIGINT to the launcher (with a rank that ignores SIGTERM), each within 15 s
# with the first non-zero exit code and no rank left behind. The ranks are small fake commands (the
# launcher runs any command), plus real prom-train ranks on bad configs.
# usage: test_launch_local.sh LAUNCHER PROM_TRAIN [ROUNDS]   (ROUNDS defaults to 50)
set -u
launcher=$1
prom_train=$2
rounds=${3:-50}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
set -m  # background launchers here must not start with SIGINT ignored (a non-interactive shell's rule)
export MASTER_PORT=29999  # the fake ranks never listen; skips the launcher's port probe
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# No process whose pid is in $tmp/pids/* may be alive (each fake rank writes its pid there).
check_ranks_gone() {
  local what=$1 f p
  for f in "$tmp"/pids/*; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    if kill -0 "$p" 2>/dev/null; then
      fail "$what: rank pid $p ($(basename "$f")) still running after the launcher returned"
      kill -KILL "$p" 2>/dev/null
    fi
  done
  rm -rf "$tmp/pids"
  mkdir -p "$tmp/pids"
}
mkdir -p "$tmp/pids"

# Runs the launcher with a 20 s hard limit; sets rc and ms.
launch() {
  local start
  start=$(now_ms)
  timeout -k 2 20 "$launcher" "$@" >"$tmp/out" 2>&1
  rc=$?
  ms=$(($(now_ms) - start))
}

expect() {  # expect WHAT EXPECTED_RC
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    fail "$1: the launcher did not return within 20 s (timeout's code $rc)"
  elif [ "$rc" -ne "$2" ]; then
    fail "$1: exit code $rc, expected $2; output: $(head -c 400 "$tmp/out")"
  elif [ "$ms" -gt 15000 ]; then
    fail "$1: took $ms ms (limit 15000)"
  fi
}

# ROUNDS launches of 3 fake ranks; each must return EXPECTED_RC within 15 s, no rank left running.
rounds_of() {  # rounds_of LABEL EXPECTED_RC RANK_COMMAND
  local label=$1 expected=$2 cmd=$3 worst=0 start i
  start=$(now_ms)
  for ((i = 1; i <= rounds; i++)); do
    launch 3 bash -c "$cmd"
    expect "$label, round $i" "$expected"
    check_ranks_gone "$label, round $i"
    [ "$ms" -le "$worst" ] || worst=$ms
  done
  echo "$label: $rounds rounds in $(($(now_ms) - start)) ms, slowest $worst ms"
}

# 1. Every rank fails at once with a config error.
rounds_of "every rank fails at once" 2 \
  'echo $$ > '"$tmp"'/pids/r$RANK; echo "prom-train: error: x.yaml: train.batch_size: bad" >&2; exit 2'
# 2. One rank fails while the others run: they get SIGTERM, the exit code is the failed rank's 3
#    (not the 143 of the ranks it stopped).
rounds_of "one rank fails" 3 'echo $$ > '"$tmp"'/pids/r$RANK; if [ "$RANK" = 1 ]; then exit 3; fi; exec sleep 60'

# 3. A signal to the launcher ends it and its ranks within 15 s: SIGTERM and SIGINT, and SIGTERM with
#    a rank that ignores SIGTERM (the launcher's SIGKILL 10 s later ends it).
signal_case() {  # signal_case SIGNAL EXPECTED_RC LABEL RANK_COMMAND
  local sig=$1 expected=$2 label="SIG$1, $3" cmd=$4 start pid k
  "$launcher" 3 bash -c "$cmd" >"$tmp/out" 2>&1 &
  pid=$!
  for ((k = 0; k < 200; k++)); do  # until all 3 ranks are up (10 s at most)
    [ "$(ls "$tmp/pids" | wc -l)" -ge 3 ] && break
    sleep 0.05
  done
  sleep 0.2  # the ranks' exec sleep
  start=$(now_ms)
  kill -"$sig" "$pid"
  for ((k = 0; k < 400; k++)); do  # 20 s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    fail "$label: the launcher still runs 20 s later"
    kill -KILL "$pid"
  fi
  wait "$pid"
  rc=$?
  ms=$(($(now_ms) - start))
  expect "$label" "$expected"
  check_ranks_gone "$label"
  echo "$label: exit $rc after $ms ms"
}
rank='echo $$ > '"$tmp"'/pids/r$RANK; exec sleep 60'
signal_case TERM 143 "3 ranks" "$rank"
signal_case INT 130 "3 ranks" "$rank"
signal_case TERM 143 "rank 2 ignores SIGTERM" 'echo $$ > '"$tmp"'/pids/r$RANK; if [ "$RANK" = 2 ]; then trap "" TERM; fi; exec sleep 60'

# 4. Real prom-train ranks on bad configs (a missing file; a global batch 3 ranks cannot split).
cat >"$tmp/tiny.yaml" <<EOF
run: {name: t, out_dir: $tmp/runs, threads: 1}
model: {arch: mobilenet_v2, num_classes: 4, width_mult: 0.25, small_input: true, input_size: 16}
data: {synthetic: {enabled: true, samples: 32, eval_samples: 8, image_size: 16, classes: 4}}
train: {epochs: 1, batch_size: 16}
EOF
unset MASTER_PORT
for ((i = 1; i <= 2; i++)); do
  launch 3 "$prom_train" --config "$tmp/missing.yaml"
  expect "prom-train ranks with a missing config, round $i" 2
  grep -q "missing.yaml" "$tmp/out" || fail "prom-train with a missing config: the error does not name the file"
  launch 3 "$prom_train" --config "$tmp/tiny.yaml"
  expect "prom-train ranks with an indivisible batch, round $i" 2
  grep -q "train.batch_size: 16 (the global batch) is not divisible by 3 ranks" "$tmp/out" ||
    fail "prom-train with an indivisible batch: no train.batch_size error in: $(head -c 400 "$tmp/out")"
  echo "prom-train on bad configs, round $i: exit $rc after $ms ms"
done
[ ! -e "$tmp/runs" ] || fail "prom-train wrote $tmp/runs on a bad config"

if [ "$failures" -gt 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "launch_local.sh: all cases passed"
