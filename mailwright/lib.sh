# Shell helpers shared by supervise.sh and health.sh (sourced, not run).

# Whether a TCP socket listens on port $1, read from /proc: a test connection
# would make Postfix spawn postscreen (5 MB) for nothing.
listening() {
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:[0-9A-F]+ 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
