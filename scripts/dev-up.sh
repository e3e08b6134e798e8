#!/usr/bin/env bash
# Install and start what imagekit needs on a Debian/Ubuntu machine, only where it is missing:
# the Docker engine (docker.io), the local OCI registry on 127.0.0.1:5000 (docker-registry),
# debootstrap, skopeo, iproute2, and chromium with its driver (runtime-check --browser). Safe to run again: it does nothing where all is already running.
set -euo pipefail

REGISTRY_ADDR="${IMAGEKIT_DEV_REGISTRY_ADDR:-127.0.0.1:5000}"
STATE="${IMAGEKIT_DEV_STATE:-/var/lib/imagekit-dev}"
PYTHON="${PYTHON:-python3}"

say() { printf 'dev-up: %s\n' "$*"; }
refuse() { say "$1"; say "  -> $2"; exit 2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then  # the engine, the registry and debootstrap need root: said at once, not after a wait
  command -v sudo >/dev/null && sudo -n true 2>/dev/null \
    || refuse "installing and starting the Docker engine needs root" "run as root, or with sudo (sudo make build push)"
  SUDO="sudo"
fi
command -v apt-get >/dev/null || refuse "this script installs with apt-get (Debian, Ubuntu)" \
  "install docker.io, docker-registry, debootstrap, skopeo, curl, procps, python3-venv, nodejs and npm yourself"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || refuse \
  "imagekit needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1 || echo missing)" \
  "apt-get install python3.11 python3.11-venv (Ubuntu 22.04: from the deadsnakes PPA), then make PYTHON=python3.11 ..."

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v ps >/dev/null || missing+=(procps)
command -v make >/dev/null || missing+=(make)
{ command -v node >/dev/null && command -v npm >/dev/null; } || missing+=(nodejs npm)  # the tests' verifiers
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)  # `make venv`
{ command -v dockerd >/dev/null && [ -x /usr/bin/docker ]; } || missing+=(docker.io)  # the docker client on PATH may be another one
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v ip >/dev/null || missing+=(iproute2)  # the tests' own network namespace (a remote engine)
command -v chromium >/dev/null || missing+=(chromium)  # JupyterLab and the Ray dashboard in a real browser
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

wait_for() {  # wait_for <what> <seconds> <command...>
  local what=$1 secs=$2; shift 2
  for _ in $(seq "$secs"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  say "$what did not come up in ${secs}s"; return 1
}

alive() {  # alive <name> [pid]: a process of that name (with that pid) that is not a zombie
  local select=(-C "$1"); [ -z "${2:-}" ] || select=(-p "$2")
  ps "${select[@]}" -o comm=,stat= 2>/dev/null | awk -v name="$1" '$1 == name && $2 !~ /^Z/ {found = 1} END {exit !found}'
}

clear_stale_pidfile() {  # a daemon killed without cleanup leaves its pid file; the next start refuses it
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -n "$pid" ] && alive "$name" "$pid"; then return 0; fi
  say "removing stale $file (no live $name with pid ${pid:-?})"
  $SUDO rm -f "$file"
}

start_engine() {  # a dockerd that is still exiting or starting is waited for, not fought
  local starts=0
  for _ in $(seq 90); do
    /usr/bin/docker info >/dev/null 2>&1 && return 0
    if ! alive dockerd; then
      [ "$starts" -lt 5 ] || break
      clear_stale_pidfile /var/run/docker.pid dockerd
      clear_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
      [ "$starts" -eq 0 ] && say "starting dockerd (log: $STATE/dockerd.log)"
      $SUDO sh -c "nohup dockerd >>'$STATE/dockerd.log' 2>&1 &"
      starts=$((starts + 1))
    fi
    sleep 1
  done
  say "dockerd did not come up; the end of its log:"; tail -20 "$STATE/dockerd.log" 2>/dev/null; return 1
}

$SUDO mkdir -p "$STATE"
if /usr/bin/docker info >/dev/null 2>&1; then
  say "docker engine: running"
else
  start_engine
fi

if curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then
  say "registry: running on $REGISTRY_ADDR"
else
  say "starting docker-registry on $REGISTRY_ADDR (data: $STATE/registry)"
  $SUDO mkdir -p "$STATE/registry"
  $SUDO tee "$STATE/registry.yml" >/dev/null <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE/registry}
  delete: {enabled: true}
http: {addr: "$REGISTRY_ADDR"}
YML
  $SUDO sh -c "nohup docker-registry serve '$STATE/registry.yml' >'$STATE/registry.log' 2>&1 &"
  wait_for registry 30 curl -fsS "http://$REGISTRY_ADDR/v2/" || { tail -20 "$STATE/registry.log"; exit 1; }
fi
say "ready: docker $(/usr/bin/docker version --format '{{.Server.Version}}'), registry http://$REGISTRY_ADDR"
