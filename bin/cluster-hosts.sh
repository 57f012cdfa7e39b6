# Sourced by bin/start-cluster.sh and bin/stop-cluster.sh: reads conf/masters and conf/workers,
# and runs bin/keel-daemon.sh on a host (directly when the host is this one, else over ssh).

# conf/masters: one "host:rest-port" per line; '#' starts a comment. Prints "host port".
read_masters() {
    local file=$1 line n=0
    [ -f "$file" ] || { echo "no masters file $file (one host:rest-port per line)" >&2; return 1; }
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line="${line%%#*}"; line="$(echo "$line" | tr -d '[:space:]')"
        [ -n "$line" ] || continue
        if [[ ! "$line" =~ ^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):([0-9]{1,5})$ ]] || [ "${BASH_REMATCH[2]}" -gt 65535 ]; then
            echo "$file:$n: '$line' is not host:rest-port (for example localhost:8081)" >&2
            return 1
        fi
        echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
    done <"$file"
}

# conf/workers: one host per line; '#' starts a comment.
read_workers() {
    local file=$1 line n=0
    [ -f "$file" ] || { echo "no workers file $file (one host per line)" >&2; return 1; }
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line="${line%%#*}"; line="$(echo "$line" | tr -d '[:space:]')"
        [ -n "$line" ] || continue
        if [[ ! "$line" =~ ^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\])$ ]]; then
            echo "$file:$n: '$line' is not a host name (for example localhost)" >&2
            return 1
        fi
        echo "$line"
    done <"$file"
}

is_local_host() {
    case "$1" in
        localhost|127.*|::1|"[::1]"|"$(hostname)"|"$(hostname -f 2>/dev/null || hostname)") return 0 ;;
    esac
    return 1
}

# run_on HOST KIND ACTION [ARGS...]
run_on() {
    local host=$1 kind=$2 action=$3; shift 3
    if is_local_host "$host"; then
        "$home/bin/keel-daemon.sh" "$action" "$kind" "$@"
    else
        # As Flink: the same installation path on every host; pass the environment that matters.
        local envs="" v
        for v in KEEL_CONF_DIR KEEL_LOG_DIR KEEL_PID_DIR KEEL_BIN; do
            [ -n "${!v:-}" ] && envs+="$v=$(printf %q "${!v}") "
        done
        ssh -n ${KEEL_SSH_OPTS:-} "$host" "${envs}$(printf %q "$home/bin/keel-daemon.sh") $action $kind $(printf '%q ' "$@")"
    fi
}
