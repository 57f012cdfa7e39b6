#!/bin/bash
# Entrypoint of Keel's image, after Flink's: the first argument is the role (dispatcher,
# worker) or any keel subcommand (run, list, status, config show, ...); the configuration is
# $KEEL_CONF_DIR/config.yaml (default /opt/keel/conf, mount your conf/ there), and
# KEEL_PROPERTIES (like Flink's FLINK_PROPERTIES) holds extra "key: value" lines that override it.
set -euo pipefail

conf_dir="${KEEL_CONF_DIR:-/opt/keel/conf}"
export KEEL_CONF_DIR="$conf_dir"

# KEEL_PROPERTIES lines become -D key=value overrides; blank lines and '#' comments are skipped.
overrides=()
if [ -n "${KEEL_PROPERTIES:-}" ]; then
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        trimmed="$(echo "$line" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')"
        case "$trimmed" in ''|'#'*) continue ;; esac
        case "$trimmed" in
            *:*) ;;
            *) echo "KEEL_PROPERTIES line $n: '$trimmed' is not 'key: value'" >&2; exit 2 ;;
        esac
        key="$(echo "${trimmed%%:*}" | sed 's/[[:space:]]*$//')"
        value="$(echo "${trimmed#*:}" | sed 's/^[[:space:]]*//')"
        [ -n "$key" ] || { echo "KEEL_PROPERTIES line $n: '$trimmed' has no key" >&2; exit 2; }
        overrides+=(-D "$key=$value")
    done <<<"$KEEL_PROPERTIES"
fi

case "${1:-help}" in
    help|-h|--help)
        echo "usage: <image> dispatcher|worker [keel args] | <any keel subcommand> [args]"
        echo "configuration: \$KEEL_CONF_DIR/config.yaml (now $conf_dir/config.yaml); KEEL_PROPERTIES overrides keys"
        exit 0
        ;;
    dispatcher|worker)
        role="$1"; shift
        exec keel "$role" --config "$conf_dir/config.yaml" "${overrides[@]}" "$@"
        ;;
    keel)
        shift
        exec keel "${overrides[@]}" "$@"
        ;;
    *)
        # -D is a global option of keel: it may come before any subcommand (config show, ha inspect).
        exec keel "${overrides[@]}" "$@"
        ;;
esac
