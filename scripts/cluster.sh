#!/usr/bin/env bash
# The cluster topology of docker-compose.yml's "cluster" profile, without
# Docker, on loopback: an S3-compatible server (moto), a throwaway
# PostgreSQL, two ingest nodes, a compactor, a Ballista scheduler and two
# executors, two query nodes sharing the PostgreSQL state (one evaluates)
# and running user SQL on Ballista, and the demo shop with its load
# generator, its services spread over the two ingest nodes.
#
#   scripts/cluster.sh up [DIR]     start it all and wait; ctrl-c stops it all
#   scripts/cluster.sh start [DIR]  start it all, write DIR/cluster.env, return
#   scripts/cluster.sh stop [DIR]   stop what `start` started
#
# DIR defaults to ./cluster. DIR/cluster.env names every URL and process id
# (QUERY_1, QUERY_2, INGEST_1_OTLP, BALLISTA_URL, STATE_URL, PID_QUERY_1,
# ...); DIR/logs/ holds each process's log. Needs: the burnwatch binary
# ($BURNWATCH, default target/debug/burnwatch, built if missing), moto's
# server ($BURNWATCH_PYTHON's directory or PATH: pip install "moto[server]")
# and PostgreSQL's server binaries (Debian: apt-get install postgresql; or
# $BURNWATCH_PG_BIN). Settings for the query nodes pass through the
# environment (BURNWATCH_RULES_DIR, BURNWATCH_ALERT_WEBHOOKS,
# BURNWATCH_SLO_INTERVAL, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

cmd="${1:-up}"
DIR="$(mkdir -p "${2:-cluster}" && cd "${2:-cluster}" && pwd)"
ENV_FILE="$DIR/cluster.env"

stop_all() {
  [ -f "$ENV_FILE" ] || return 0
  # Query and ingest nodes first (clean shutdown: final flushes), the rest after.
  for key in PID_SHOP PID_QUERY_1 PID_QUERY_2 PID_INGEST_1 PID_INGEST_2 PID_COMPACTOR \
    PID_EXECUTOR_1 PID_EXECUTOR_2 PID_SCHEDULER PID_POSTGRES PID_S3; do
    pid=$(grep "^$key=" "$ENV_FILE" | cut -d= -f2 || true)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 2
  for key in $(grep '^PID_' "$ENV_FILE" | cut -d= -f1); do
    pid=$(grep "^$key=" "$ENV_FILE" | cut -d= -f2)
    kill -KILL "$pid" 2>/dev/null || true
  done
}

if [ "$cmd" = stop ]; then
  stop_all
  exit 0
fi
if [ "$cmd" != up ] && [ "$cmd" != start ]; then
  echo "usage: $0 up|start|stop [DIR]" >&2
  exit 2
fi

BW="${BURNWATCH:-target/debug/burnwatch}"
if [ ! -x "$BW" ]; then
  echo "building burnwatch ..."
  cargo build --quiet
fi
BW="$(cd "$(dirname "$BW")" && pwd)/$(basename "$BW")"

MOTO="moto_server"
if [ -n "${BURNWATCH_PYTHON:-}" ] && [ -x "$(dirname "$BURNWATCH_PYTHON")/moto_server" ]; then
  MOTO="$(dirname "$BURNWATCH_PYTHON")/moto_server"
elif [ -x "$HOME/.cache/burnwatch/venv/bin/moto_server" ]; then
  MOTO="$HOME/.cache/burnwatch/venv/bin/moto_server"
fi
command -v "$MOTO" >/dev/null || { echo "moto_server not found: pip install 'moto[server]'" >&2; exit 1; }
PG_BIN="${BURNWATCH_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql (or set BURNWATCH_PG_BIN)" >&2; exit 1; }

# Ports come from below the kernel's ephemeral range (32768-60999 on Linux):
# a port picked there can be taken by any outgoing connection (a node's
# client to the bucket, PostgreSQL or the scheduler) before its server
# binds it.
free_port() {
  python3 -c '
import random, socket
for _ in range(200):
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break
else:
    raise SystemExit("no free port in 20000-32000")'
}
wait_http() { # url, seconds[, pid: give up as soon as it exits]
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
      echo "the process behind $1 exited before it was ready" >&2; return 1
    fi
    sleep 0.1
  done
  echo "no answer from $1 in $2 s" >&2; return 1
}
wait_port() { # port, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1 after $2 s" >&2; return 1
}

stop_all
rm -rf "$DIR"/{logs,pg,s3,ingest-1,ingest-2,compactor,query-1,query-2,executor-1,executor-2,shop}
mkdir -p "$DIR/logs"
: > "$ENV_FILE"
note() { echo "$1=$2" >> "$ENV_FILE"; }
trap 'echo "cluster.sh: start failed; logs in $DIR/logs" >&2; stop_all' ERR

# The bucket.
S3_PORT=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$S3_PORT" > "$DIR/logs/s3.log" 2>&1 &
note PID_S3 $!
wait_http "http://127.0.0.1:$S3_PORT" 30
curl -fsS -X PUT "http://127.0.0.1:$S3_PORT/telemetry" > /dev/null
export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=burnwatch AWS_SECRET_ACCESS_KEY=burnwatch
STORAGE=s3://telemetry/burnwatch
note S3_ENDPOINT "$AWS_ENDPOINT_URL"
note STORAGE_URL "$STORAGE"

# PostgreSQL (as the postgres user when root: initdb refuses root).
PG_PORT=$(free_port)
mkdir -p "$DIR/pg"
AS=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$DIR/pg"
  AS=(setpriv --reuid=postgres --regid=postgres --clear-groups)
fi
"${AS[@]}" "$PG_BIN/initdb" -D "$DIR/pg/data" -U burnwatch -A trust -E UTF8 --no-sync > "$DIR/logs/initdb.log" 2>&1
"${AS[@]}" "$PG_BIN/postgres" -D "$DIR/pg/data" -p "$PG_PORT" -k "$DIR/pg" -c listen_addresses=127.0.0.1 \
  > "$DIR/logs/postgres.log" 2>&1 &
note PID_POSTGRES $!
wait_port "$PG_PORT" 30
for _ in $(seq 1 50); do "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q && break; sleep 0.1; done
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U burnwatch burnwatch
STATE_URL="postgres://burnwatch@127.0.0.1:$PG_PORT/burnwatch"
note STATE_URL "$STATE_URL"

# Ingest nodes and the compactor.
# A node that exits before it is ready (a port taken in the meantime) is
# started again on fresh ports, up to three times.
for i in 1 2; do
  for attempt in 1 2 3; do
    grpc=$(free_port); http=$(free_port); api=$(free_port); flight=$(free_port)
    "$BW" serve --role ingest --storage-url "$STORAGE" --node-id "ingest-$i" --data-dir "$DIR/ingest-$i" \
      --otlp-grpc-addr "127.0.0.1:$grpc" --otlp-http-addr "127.0.0.1:$http" --http-addr "127.0.0.1:$api" \
      --flight-addr "127.0.0.1:$flight" > "$DIR/logs/ingest-$i.out" 2>> "$DIR/logs/ingest-$i.log" &
    pid=$!
    wait_http "http://127.0.0.1:$api/readyz" 60 "$pid" && break
    kill -KILL "$pid" 2>/dev/null || true
    [ "$attempt" = 3 ] && false
    echo "ingest-$i: starting again on other ports" >&2
  done
  note "PID_INGEST_$i" "$pid"
  note "INGEST_${i}_OTLP" "http://127.0.0.1:$grpc"
  note "INGEST_${i}_OTLP_HTTP" "http://127.0.0.1:$http"
  note "INGEST_${i}_API" "http://127.0.0.1:$api"
done
api=$(free_port)
"$BW" serve --role compact --storage-url "$STORAGE" --data-dir "$DIR/compactor" --http-addr "127.0.0.1:$api" \
  > "$DIR/logs/compactor.out" 2> "$DIR/logs/compactor.log" &
note PID_COMPACTOR $!

# Ballista: a scheduler and two executors.
SCHED=$(free_port)
"$BW" ballista scheduler --storage-url "$STORAGE" --bind-port "$SCHED" --log warn \
  > "$DIR/logs/scheduler.out" 2> "$DIR/logs/scheduler.log" &
note PID_SCHEDULER $!
wait_port "$SCHED" 30
note BALLISTA_URL "df://127.0.0.1:$SCHED"
for i in 1 2; do
  "$BW" ballista executor --storage-url "$STORAGE" --data-dir "$DIR/executor-$i" --log warn \
    --bind-port "$(free_port)" --bind-grpc-port "$(free_port)" --scheduler-port "$SCHED" \
    > "$DIR/logs/executor-$i.out" 2> "$DIR/logs/executor-$i.log" &
  note "PID_EXECUTOR_$i" $!
done

# Query nodes: shared state, one evaluator, SQL on Ballista.
for i in 1 2; do
  for attempt in 1 2 3; do
    api=$(free_port)
    "$BW" serve --role query --storage-url "$STORAGE" --node-id "query-$i" --data-dir "$DIR/query-$i" \
      --http-addr "127.0.0.1:$api" --state-url "$STATE_URL" \
      --query-engine ballista --ballista-url "df://127.0.0.1:$SCHED" \
      > "$DIR/logs/query-$i.out" 2>> "$DIR/logs/query-$i.log" &
    pid=$!
    wait_http "http://127.0.0.1:$api/readyz" 60 "$pid" && break
    kill -KILL "$pid" 2>/dev/null || true
    [ "$attempt" = 3 ] && false
    echo "query-$i: starting again on other ports" >&2
  done
  note "PID_QUERY_$i" "$pid"
  note "QUERY_$i" "http://127.0.0.1:$api"
done

# The shop, its services taking turns over the two ingest nodes.
ep1=$(grep '^INGEST_1_OTLP=' "$ENV_FILE" | cut -d= -f2)
ep2=$(grep '^INGEST_2_OTLP=' "$ENV_FILE" | cut -d= -f2)
"$BW" demo shop --otlp-endpoint "$ep1,$ep2" --data-dir "$DIR/shop" --shop-port-base 0 \
  ${BURNWATCH_SHOP_ARGS:-} > "$DIR/logs/shop.out" 2> "$DIR/logs/shop.log" &
note PID_SHOP $!
note SHOP_DATA_DIR "$DIR/shop"
for _ in $(seq 1 300); do grep -q "gateway" "$DIR/logs/shop.out" 2>/dev/null && break; sleep 0.1; done
grep -q "gateway" "$DIR/logs/shop.out" || { echo "the shop did not start; see $DIR/logs/shop.log" >&2; false; }
trap - ERR

q1=$(grep '^QUERY_1=' "$ENV_FILE" | cut -d= -f2)
q2=$(grep '^QUERY_2=' "$ENV_FILE" | cut -d= -f2)
echo "burnwatch cluster: dashboards $q1 and $q2 | OTLP $ep1, $ep2 | Ballista df://127.0.0.1:$SCHED | state $STATE_URL | $ENV_FILE"
if [ "$cmd" = start ]; then
  exit 0
fi
trap 'echo; echo "cluster.sh: stopping"; stop_all; exit 0' INT TERM
while true; do sleep 3600; done
