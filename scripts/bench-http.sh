#!/usr/bin/env bash
# HTTP load benchmark for `arbiter serve`, side by side with the in-process engine, in one run.
#
#   cargo build --release -p arbiter-cli && scripts/bench-http.sh [seconds]
#
# Needs wrk (Debian: apt-get install wrk). Traffic goes to 127.0.0.1 only, for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
port=18181
bin=target/release/arbiter
[ -x "$bin" ] || { echo "build first: cargo build --release -p arbiter-cli" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" serve --demo --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do
  grep -q "enforcement_point" "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
key=$(grep "enforcement_point" "$work/serve.out" | sed 's/.*: //')
[ -n "$key" ] || { echo "server did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }

single='{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}'
items=""
for i in $(seq 10); do
  case $((i % 3)) in
    0) item='{"resource":{"type":"Tool","id":"crm.lookup_customer"}}' ;;
    1) item='{"resource":{"type":"Tool","id":"crm.delete_customer"}}' ;;
    2) item='{"resource":{"type":"Dataset","id":"customer-pii"},"action":{"name":"read"}}' ;;
  esac
  items="$items${items:+,}$item"
done
batch='{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"evaluations":['"$items"']}'

run_wrk() { # path body label decisions_per_request
  cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
wrk.body = [[$2]]
done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n", summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
  local line
  line=$(wrk -t2 -c32 -d"${seconds}s" --latency -s "$work/post.lua" "http://127.0.0.1:$port$1" | grep '^RESULT')
  read -r _ rps p50 p99 status_errors io_errors <<<"$line"
  printf '| %s | %s | %.0f | %s | %s | %s |\n' "$3" "$rps" "$(echo "$rps * $4" | bc)" "$p50" "$p99" "$((status_errors + io_errors))"
}

# In-process baseline: the same engine deciding 100k requests in one process, no HTTP.
for _ in $(seq 10000); do head -n 9 examples/demo/requests.jsonl; done | head -n 100000 >"$work/requests.jsonl"
inproc=$("$bin" check -p examples/demo/policies.cedar -s examples/demo/schema.cedarschema -i examples/demo/inventory.json \
  --now 1767225600 --no-explain -r "$work/requests.jsonl" 2>&1 >/dev/null | sed -n 's/.*(\([0-9]*\) decisions\/s).*/\1/p')

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); wrk -t2 -c32 -d${seconds}s on loopback"
echo
echo "| mode | requests/s | decisions/s | p50 ms | p99 ms | errors |"
echo "| --- | --- | --- | --- | --- | --- |"
run_wrk /access/v1/evaluation "$single" "HTTP, single evaluation" 1
run_wrk /access/v1/evaluations "$batch" "HTTP, batch of 10" 10
echo "| in-process \`arbiter check\` (100k requests, one thread) | - | $inproc | - | - | - |"
