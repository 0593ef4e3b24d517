#!/usr/bin/env bash
# Starts the real servers that Palisade's integration tests talk to (issue 13): redis-server
# on 127.0.0.1 on a free port, as a child of this shell, with persistence off; and etcd
# (Debian package etcd-server) on 127.0.0.1 on free client and peer ports, with a temporary
# data directory.
#
# Use it by sourcing it, so the exported variables reach the tests and the EXIT trap stops
# the servers when the calling script ends:
#
#     source .ci/services.sh        # exports PALISADE_REDIS_URL, PALISADE_ETCD_ENDPOINT, ...
#     cargo test -p palisade-rate-limit-redis
#     cargo test -p palisade-discovery --features etcd   # needs protoc (protobuf-compiler)
#
# It also writes the variables to target/palisade-services.env (for a second shell:
# `set -a; source target/palisade-services.env; set +a`). Installs redis-server from the
# distribution's packages when they are missing (root, or passwordless sudo). A server that
# cannot be installed or started is reported on stderr and its variable left unset: the tests
# that need it then skip with a printed reason, so a CI run must check that they ran.

palisade_services_main() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    local state_dir="${PALISADE_SERVICES_DIR:-$root/target/palisade-services}"
    local env_file="$root/target/palisade-services.env"
    mkdir -p "$state_dir" "$(dirname "$env_file")"
    : >"$env_file"

    local sudo=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
        sudo="sudo -n"
    fi
    local apt_updated=0
    ensure_pkg() { # ensure_pkg BINARY PACKAGE
        command -v "$1" >/dev/null 2>&1 && return 0
        command -v apt-get >/dev/null 2>&1 || return 1
        if [ "$apt_updated" = 0 ]; then
            $sudo apt-get update -qq >/dev/null || return 1
            apt_updated=1
        fi
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null || return 1
        command -v "$1" >/dev/null 2>&1
    }
    free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
            echo $((20000 + RANDOM % 20000))
    }

    # --- Redis --------------------------------------------------------------------------
    if ensure_pkg redis-server redis-server; then
        local port
        port="$(free_port)"
        redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
            --dir "$state_dir" --daemonize no --loglevel warning \
            >"$state_dir/redis.log" 2>&1 &
        PALISADE_REDIS_PID=$!
        local i
        for i in $(seq 1 50); do
            if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
                break
            fi
            sleep 0.1
        done
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            export PALISADE_REDIS_URL="redis://127.0.0.1:$port/"
            export PALISADE_REDIS_PORT="$port"
            # The tests restart Redis to test reconnection; they need the binary's path.
            PALISADE_REDIS_SERVER="$(command -v redis-server)"
            export PALISADE_REDIS_SERVER
            export PALISADE_REDIS_PID
            {
                echo "PALISADE_REDIS_URL=$PALISADE_REDIS_URL"
                echo "PALISADE_REDIS_PORT=$PALISADE_REDIS_PORT"
                echo "PALISADE_REDIS_SERVER=$PALISADE_REDIS_SERVER"
            } >>"$env_file"
            echo "services: redis-server $(redis-server --version | awk '{print $3}') on $PALISADE_REDIS_URL (pid $PALISADE_REDIS_PID)" >&2
        else
            echo "services: redis-server did not answer on port $port; see $state_dir/redis.log" >&2
            kill "$PALISADE_REDIS_PID" 2>/dev/null || true
            unset PALISADE_REDIS_PID
        fi
    else
        echo "services: redis-server is not installed and could not be installed" >&2
    fi

    # --- etcd ---------------------------------------------------------------------------
    if ensure_pkg etcd etcd-server; then
        local client_port peer_port
        client_port="$(free_port)"
        peer_port="$(free_port)"
        while [ "$peer_port" = "$client_port" ]; do peer_port="$(free_port)"; done
        PALISADE_ETCD_DATA="$(mktemp -d "$state_dir/etcd.XXXXXX")"
        local client_url="http://127.0.0.1:$client_port" peer_url="http://127.0.0.1:$peer_port"
        etcd --name palisade --data-dir "$PALISADE_ETCD_DATA" \
            --listen-client-urls "$client_url" --advertise-client-urls "$client_url" \
            --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
            --initial-cluster "palisade=$peer_url" --initial-cluster-state new \
            >"$state_dir/etcd.log" 2>&1 &
        PALISADE_ETCD_PID=$!
        etcd_healthy() {
            if command -v curl >/dev/null 2>&1; then
                curl -fsS --max-time 1 "$client_url/health" 2>/dev/null | grep -q '"health":"true"'
            else
                python3 -c 'import sys, urllib.request; sys.exit(0 if b"true" in urllib.request.urlopen(sys.argv[1] + "/health", timeout=1).read() else 1)' "$client_url" 2>/dev/null
            fi
        }
        local i
        for i in $(seq 1 100); do
            etcd_healthy && break
            sleep 0.1
        done
        if etcd_healthy; then
            export PALISADE_ETCD_ENDPOINT="$client_url"
            export PALISADE_ETCD_PID PALISADE_ETCD_DATA
            echo "PALISADE_ETCD_ENDPOINT=$PALISADE_ETCD_ENDPOINT" >>"$env_file"
            echo "services: etcd $(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}') on $PALISADE_ETCD_ENDPOINT (pid $PALISADE_ETCD_PID)" >&2
        else
            echo "services: etcd did not become healthy on $client_url; see $state_dir/etcd.log" >&2
            kill "$PALISADE_ETCD_PID" 2>/dev/null || true
            wait "$PALISADE_ETCD_PID" 2>/dev/null || true
            rm -rf "$PALISADE_ETCD_DATA"
            unset PALISADE_ETCD_PID PALISADE_ETCD_DATA
        fi
    else
        echo "services: etcd (etcd-server) is not installed and could not be installed" >&2
    fi
}

# Stops what this script started (and a Redis a test restarted on the same port).
palisade_services_stop() {
    if [ -n "${PALISADE_ETCD_PID:-}" ]; then
        kill "$PALISADE_ETCD_PID" 2>/dev/null || true
        wait "$PALISADE_ETCD_PID" 2>/dev/null || true
    fi
    if [ -n "${PALISADE_ETCD_DATA:-}" ]; then
        rm -rf "$PALISADE_ETCD_DATA"
    fi
    if [ -n "${PALISADE_REDIS_PORT:-}" ]; then
        redis-cli -h 127.0.0.1 -p "$PALISADE_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [ -n "${PALISADE_REDIS_PID:-}" ]; then
        kill "$PALISADE_REDIS_PID" 2>/dev/null || true
        wait "$PALISADE_REDIS_PID" 2>/dev/null || true
    fi
}

palisade_services_main
trap palisade_services_stop EXIT
