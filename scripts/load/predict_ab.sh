#!/bin/bash
# Predictions under load, A/B: `predict_ab.sh OLD_BINARY NEW_BINARY`. Each round starts a fresh
# server per variant (OLD with no tokens, NEW with none, NEW with a `predict` token), trains a
# digits MLP 2x64 for 3 epochs, then runs wrk (2 threads, 16 connections, 8 s, one row per
# request) against its predict route; three alternating rounds, one line per run. Needs wrk
# (Debian: apt-get install wrk) and curl.
set -u
OLD=${1:?old binary}; NEW=${2:?new binary}
OUT=$(mktemp -d)
SPEC='{"dataset":"digits","model":{"kind":"mlp","depth":2,"width":64},"training":{"optimizer":{"kind":"adam","lr":0.001},"epochs":3,"batch_size":64,"seed":7}}'
run() { # name binary mode
  local name=$1 bin=$2 mode=$3 dir=$(mktemp -d) port=$((18100 + RANDOM % 500))
  local auth=() ; TOKEN=""
  if [ "$mode" = token ]; then
    local train=$($bin tokens create --scope train --owner bench --data-dir $dir 2>/dev/null)
    TOKEN=$($bin tokens create --scope predict --owner bench --quota requests_per_second=0 --data-dir $dir 2>/dev/null)
    auth=(-H "Authorization: Bearer $train")
  fi
  RUST_LOG=warn $bin --data-dir $dir --bind 127.0.0.1:$port > /dev/null 2>&1 &
  local pid=$!
  for i in $(seq 50); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.2; done
  local id=$(curl -s "${auth[@]}" -H 'content-type: application/json' localhost:$port/v1/jobs -d "$SPEC" | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
  for i in $(seq 200); do
    s=$(curl -s "${auth[@]}" localhost:$port/v1/jobs/$id | python3 -c 'import sys,json; print(json.load(sys.stdin)["status"])')
    [ "$s" = succeeded ] && break; sleep 0.3; done
  TOKEN=$TOKEN wrk -t2 -c16 -d8s --latency -s "$(dirname "$0")/predict.lua" http://127.0.0.1:$port/v1/models/$id/predict > "$OUT/wrk-$name.txt" 2>&1
  local rps=$(grep Requests/sec "$OUT/wrk-$name.txt" | awk '{print $2}')
  local p50=$(grep -E '^ +50%' "$OUT/wrk-$name.txt" | awk '{print $2}')
  local p99=$(grep -E '^ +99%' "$OUT/wrk-$name.txt" | awk '{print $2}')
  local non2xx=$(grep -c "Non-2xx" "$OUT/wrk-$name.txt")
  echo "$name rps=$rps p50=$p50 p99=$p99 non2xx_lines=$non2xx"
  kill $pid; wait $pid 2>/dev/null; rm -rf $dir
}
for round in 1 2 3; do
  run old "$OLD" open
  run new-open "$NEW" open
  run new-token "$NEW" token
done
