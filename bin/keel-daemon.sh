#!/usr/bin/env bash
# Starts, stops and reports one kind of Keel process on this host, in the background, as Flink's
# bin/flink-daemon.sh does. bin/start-cluster.sh and bin/stop-cluster.sh call it per host.
#
#   bin/keel-daemon.sh start  dispatcher|worker [keel args, e.g. -D rest.port=8082]
#   bin/keel-daemon.sh stop   dispatcher|worker     # stops the most recently started one
#   bin/keel-daemon.sh stop-all dispatcher|worker
#   bin/keel-daemon.sh status dispatcher|worker     # one line per started process; exit 1 if one is gone
#
# Environment (all optional):
#   KEEL_BIN       the keel binary (default: bin/keel next to this script, else
#                  $CARGO_TARGET_DIR/debug/keel or ~/.cache/keel/target/debug/keel, else keel on PATH)
#   KEEL_CONF_DIR  configuration directory holding config.yaml (default: conf/ next to bin/)
#   KEEL_LOG_DIR   one log file per process (default: log/ next to bin/)
#   KEEL_PID_DIR   pid files, one per kind, one pid per line (default: $KEEL_LOG_DIR)
#   KEEL_STOP_TIMEOUT  seconds to wait for a graceful stop before SIGKILL (default 30)
set -euo pipefail

usage() { sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1; kind=$2; shift 2
case "$kind" in dispatcher|worker) ;; *) echo "keel-daemon: unknown process kind '$kind' (expected dispatcher or worker)" >&2; exit 2;; esac

home="$(cd "$(dirname "$0")/.." && pwd)"
conf_dir="${KEEL_CONF_DIR:-$home/conf}"
log_dir="${KEEL_LOG_DIR:-$home/log}"
pid_dir="${KEEL_PID_DIR:-$log_dir}"
pid_file="$pid_dir/keel-$(id -un)-$kind.pid"

keel_bin() {
    if [ -n "${KEEL_BIN:-}" ]; then echo "$KEEL_BIN"; return; fi
    for b in "$home/bin/keel" "${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}/debug/keel"; do
        if [ -x "$b" ] && [ ! -d "$b" ]; then echo "$b"; return; fi
    done
    command -v keel || { echo "keel-daemon: no keel binary (set KEEL_BIN, or build it: cargo build -p keel-cli)" >&2; exit 1; }
}

alive() { kill -0 "$1" 2>/dev/null; }

case "$action" in
start)
    bin=$(keel_bin)
    [ -f "$conf_dir/config.yaml" ] || { echo "keel-daemon: no configuration file $conf_dir/config.yaml (set KEEL_CONF_DIR)" >&2; exit 1; }
    mkdir -p "$log_dir" "$pid_dir"
    n=0
    while [ -e "$log_dir/keel-$kind-$n-$(hostname).log" ]; do n=$((n + 1)); done
    log="$log_dir/keel-$kind-$n-$(hostname).log"
    # stdout (the keel-ready line) and stderr (plain-text logs: not a terminal) go to the log file.
    nohup "$bin" "$kind" --config "$conf_dir/config.yaml" "$@" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >>"$pid_file"
    # Wait (bounded) for the process to listen, and report where.
    for _ in $(seq 1 300); do
        if ready=$(grep -m1 '^keel-ready ' "$log" 2>/dev/null); then
            echo "started $kind (pid $pid, log $log): ${ready#keel-ready }"
            exit 0
        fi
        if ! alive "$pid"; then
            echo "keel-daemon: $kind (pid $pid) exited during startup; last lines of $log:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "keel-daemon: $kind (pid $pid) did not report ready within 30 s; see $log" >&2
    exit 1
    ;;
stop|stop-all)
    [ -s "$pid_file" ] || { echo "no $kind to stop (no pid file $pid_file)"; exit 0; }
    if [ "$action" = stop ]; then pids=$(tail -n 1 "$pid_file"); else pids=$(tac "$pid_file"); fi
    for pid in $pids; do
        if alive "$pid"; then
            kill -TERM "$pid"
            for _ in $(seq 1 $(( ${KEEL_STOP_TIMEOUT:-30} * 10 ))); do alive "$pid" || break; sleep 0.1; done
            if alive "$pid"; then
                echo "$kind (pid $pid) did not stop within ${KEEL_STOP_TIMEOUT:-30} s; killing it" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
            echo "stopped $kind (pid $pid)"
        else
            echo "$kind (pid $pid) was not running"
        fi
        grep -vx "$pid" "$pid_file" >"$pid_file.tmp" || true
        mv "$pid_file.tmp" "$pid_file"
    done
    [ -s "$pid_file" ] || rm -f "$pid_file"
    ;;
status)
    [ -s "$pid_file" ] || { echo "no $kind started from here"; exit 0; }
    rc=0
    while read -r pid; do
        if alive "$pid"; then echo "$kind pid $pid running"; else echo "$kind pid $pid NOT running"; rc=1; fi
    done <"$pid_file"
    exit $rc
    ;;
*) usage ;;
esac
