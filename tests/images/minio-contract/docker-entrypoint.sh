#!/bin/sh
# As minio/minio's: a command line that does not start with a command runs as `minio ARGS`.
set -e
if [ "${1}" != "minio" ]; then
    if [ -n "${1}" ] && ! command -v "${1}" >/dev/null 2>&1 || [ "${1#-}" != "${1}" ]; then
        set -- minio "$@"
    fi
fi
exec "$@"
