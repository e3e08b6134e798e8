#!/bin/bash
# Stand-in for docker-stacks' start.sh, as a container that is not root runs it: say what it was given, run the
# hooks of start-notebook.d and before-notebook.d, then exec the command it was given.
set -e
_log () {
    if [[ "$*" == "ERROR:"* ]] || [[ "$*" == "WARNING:"* ]] || [[ "${JUPYTER_DOCKER_STACKS_QUIET}" == "" ]]; then
        echo "$@"
    fi
}
_log "Entered start.sh with args:" "$@"
unset_explicit_env_vars () {
    if [ -n "${JUPYTER_ENV_VARS_TO_UNSET}" ]; then
        for env_var_to_unset in $(echo "${JUPYTER_ENV_VARS_TO_UNSET}" | tr ',' ' '); do
            unset "${env_var_to_unset}"
        done
        unset JUPYTER_ENV_VARS_TO_UNSET
    fi
}
if [ $# -eq 0 ]; then cmd=( "bash" ); else cmd=( "$@" ); fi
source /usr/local/bin/run-hooks.sh /usr/local/bin/start-notebook.d
if [ "$(id -u)" == 0 ]; then
    _log "ERROR: this stand-in runs as ${NB_USER} only"
    exit 1
fi
if [[ "${NB_UID}" != "$(id -u)" || "${NB_GID}" != "$(id -g)" ]]; then
    _log "WARNING: container must be started as root to change the desired user's id with NB_UID or NB_GID"
fi
source /usr/local/bin/run-hooks.sh /usr/local/bin/before-notebook.d
unset_explicit_env_vars
_log "Executing the command:" "${cmd[@]}"
exec "${cmd[@]}"
