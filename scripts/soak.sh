#!/usr/bin/env bash
# Soak test: `burnwatch demo` at a steady load with a chaos scenario every
# ten minutes, sampled every minute: the server's RSS and anonymous
# memory (RssAnon), the query engine's Parquet metadata cache, the allocator's
# live, resident and retained bytes (jemalloc's statistics from /metrics),
# open file descriptors, WAL bytes, Parquet files and data bytes, and the
# latency of three API queries. Not part of the test run (BENCHMARKS.md, "Soak").
#
#   scripts/soak.sh [DIR]     DIR defaults to target/soak; results in DIR/soak.csv
#
# Environment: SOAK_MINUTES (60), SOAK_RPS (100), SOAK_QUERY_LIMIT_MS (2000),
# BURNWATCH (the binary; default target/release/burnwatch, built if
# missing). Uses the demo's default ports (8080, 4317, 4318, 9100-9107).
#
# Fails (exit 1) when a query takes longer than SOAK_QUERY_LIMIT_MS or does
# not answer 200, or when RSS, anonymous memory, open descriptors or WAL
# bytes keep growing: the largest sample of the last third of the run more
# than 25% (and more than a small floor) above the largest of the middle third. Data bytes and
# file counts grow with ingest until retention and compaction catch up;
# they are reported, and fail only past twice the middle third's largest.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${1:-target/soak}"
MINUTES="${SOAK_MINUTES:-60}"
RPS="${SOAK_RPS:-100}"
LIMIT_MS="${SOAK_QUERY_LIMIT_MS:-2000}"
BW="${BURNWATCH:-target/release/burnwatch}"
if [ ! -x "$BW" ]; then
  echo "building $BW ..."
  cargo build --release --quiet
fi
BW="$(cd "$(dirname "$BW")" && pwd)/$(basename "$BW")"

rm -rf "$DIR"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
DATA="$DIR/data"
API=http://127.0.0.1:8080

"$BW" demo --data-dir "$DATA" --rps "$RPS" > "$DIR/demo.out" 2> "$DIR/demo.log" &
PID=$!
trap 'kill -INT $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -fsS -o /dev/null "$API/readyz" 2>/dev/null && break; sleep 0.5; done
curl -fsS -o /dev/null "$API/readyz" || { echo "the demo did not start; see $DIR/demo.log" >&2; exit 1; }

# The server's pid: the demo process serves in-process.
SERVER=$PID
SCENARIOS=(
  "payments --outage --for 2m"
  "inventory --latency 300ms --jitter 100ms --for 3m"
  "catalog --error-rate 0.3 --for 2m"
  "orders --slow-dependency payments=800ms --for 3m"
  "payments --error-rate 0.5 --for 4m"
  "catalog --outage --for 1m"
)

# ms a GET (or, with a JSON body, a POST) takes; -1 when it does not answer 200.
timed() {
  local out args=()
  [ -n "${2:-}" ] && args=(-H 'content-type: application/json' --data "$2")
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 30 "${args[@]}" "$1" || echo "000 0")
  local code=${out%% *} secs=${out##* }
  if [ "$code" != 200 ]; then echo -1; else python3 -c "print(round($secs * 1000, 1))"; fi
}

CSV="$DIR/soak.csv"
echo "minute,rss_mib,anon_mib,alloc_mib,alloc_resident_mib,alloc_retained_mib,meta_cache_mib,fds,wal_mib,parquet_files,data_mib,red_ms,slos_ms,sql_ms,chaos" > "$CSV"
# MiB of one of the allocator's figures in a /metrics text (-1 when absent).
alloc() {
  awk -v k="kind=\"$2\"" '$1 ~ /^burnwatch_allocator_bytes/ && index($1, k) { printf "%d", $2 / 1048576; f = 1 } END { if (!f) printf "-1" }' "$1"
}
SQL='{"sql": "SELECT service_name, count(*) AS n FROM spans WHERE start_time >= now() - INTERVAL '"'"'5 minutes'"'"' GROUP BY 1"}'
start=$(date +%s)
for m in $(seq 1 "$MINUTES"); do
  chaos=""
  if [ $(( (m - 1) % 10 )) = 5 ]; then
    chaos="${SCENARIOS[$(( (m - 1) / 10 % ${#SCENARIOS[@]} ))]}"
    # shellcheck disable=SC2086
    "$BW" demo chaos $chaos >> "$DIR/chaos.log" 2>&1 || echo "chaos $chaos failed" >&2
  fi
  # Sleep to the minute mark.
  now=$(date +%s)
  wait_s=$(( start + m * 60 - now ))
  [ "$wait_s" -gt 0 ] && sleep "$wait_s"
  kill -0 "$SERVER" 2>/dev/null || { echo "the server exited; see $DIR/demo.log" >&2; exit 1; }
  rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER/status")
  anon_kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$SERVER/status")
  fds=$(ls "/proc/$SERVER/fd" | wc -l)
  wal=$(du -sk "$DATA/wal" 2>/dev/null | cut -f1 || echo 0)
  files=$(find "$DATA" -name '*.parquet' | wc -l)
  data=$(du -sk "$DATA" | cut -f1)
  curl -s --max-time 30 "$API/metrics" > "$DIR/metrics.txt" || : > "$DIR/metrics.txt"
  allocated=$(alloc "$DIR/metrics.txt" allocated)
  a_resident=$(alloc "$DIR/metrics.txt" resident)
  a_retained=$(alloc "$DIR/metrics.txt" retained)
  meta=$(awk '$1 == "burnwatch_query_metadata_cache_bytes" { printf "%d", $2 / 1048576; f = 1 } END { if (!f) printf "-1" }' "$DIR/metrics.txt")
  red=$(timed "$API/api/v1/red/services")
  slos=$(timed "$API/api/v1/slos")
  sql=$(timed "$API/api/v1/query" "$SQL")
  printf '%d,%d,%d,%s,%s,%s,%s,%d,%d,%d,%d,%s,%s,%s,%s\n' "$m" $((rss_kb / 1024)) $((anon_kb / 1024)) \
    "$allocated" "$a_resident" "$a_retained" "$meta" "$fds" $((wal / 1024)) "$files" $((data / 1024)) "$red" "$slos" "$sql" "$chaos" | tee -a "$CSV"
done

python3 - "$CSV" "$LIMIT_MS" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
limit = float(sys.argv[2])
problems = []
for r in rows:
    for q in ("red_ms", "slos_ms", "sql_ms"):
        v = float(r[q])
        if v < 0 or v > limit:
            problems.append(f"minute {r['minute']}: {q} = {v} (limit {limit} ms, -1: no 200)")
n = len(rows)
if n >= 6:
    mid = rows[n // 3 : 2 * n // 3]
    last = rows[2 * n // 3 :]
    for col, floor, factor in (("rss_mib", 64, 1.25), ("anon_mib", 64, 1.25), ("fds", 32, 1.25), ("wal_mib", 64, 1.25),
                               ("parquet_files", 50, 2.0), ("data_mib", 256, 2.0)):
        a = max(float(r[col]) for r in mid)
        b = max(float(r[col]) for r in last)
        if b > a * factor and b - a > floor:
            problems.append(f"{col} grows: largest {b} in the last third against {a} in the middle third")
print(f"{n} samples; " + ("OK" if not problems else "FAILED"))
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
EOF
