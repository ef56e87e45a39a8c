# Shell helpers shared by supervise.sh and health.sh (sourced, not run).

# Whether a TCP socket listens on port $1, read from /proc: a test connection
# would make Postfix spawn postscreen (5 MB) for nothing.
listening() {
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:[0-9A-F]+ 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A checksum of the state (path, mtime, size, inode) of the files listed in $1, one path a
# line (spaces allowed), and of the directory $2. A path that does not exist prints
# nothing, so a new file changes the sum too. One `stat` for all: this runs every poll.
fingerprint() {
    _fp_list=$1 _fp_dir=$2
    set --
    if [ -r "$_fp_list" ]; then
        while IFS= read -r _fp_path || [ -n "$_fp_path" ]; do
            [ -n "$_fp_path" ] && set -- "$@" "$_fp_path"
        done <"$_fp_list"
    fi
    stat -c '%n %.9Y %s %i' -- "$@" "$_fp_dir" 2>/dev/null | cksum
}
