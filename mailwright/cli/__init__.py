"""docker-mailserver's `setup` command for mailwright (`python3 -m mailwright.cli …`).

It edits the config folder only, under the folder's lock; the running server
notices the change and applies it. Standard library plus `ops.settings` and
`ops.configdir`: it runs in the image and on a VPS without pip.
"""
