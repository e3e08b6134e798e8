#!/bin/bash
# Stand-in for docker-stacks' run-hooks.sh: source every *.sh of the folder, run every executable, in order.
if [ "$#" -ne 1 ]; then echo "Should pass exactly one directory"; return 1; fi
if [[ ! -d "${1}" ]]; then echo "Directory ${1} doesn't exist or is not a directory"; return 1; fi
echo "Running hooks in: ${1} as uid: $(id -u) gid: $(id -g)"
for f in "${1}/"*; do
    if [ ! -f "${f}" ]; then continue; fi
    case "${f}" in
        *.sh) echo "Sourcing shell script: ${f}"; source "${f}" ;;
        *) if [ -x "${f}" ]; then echo "Running executable: ${f}"; "${f}"; else echo "Ignoring non-executable: ${f}"; fi ;;
    esac
done
echo "Done running hooks in: ${1}"
