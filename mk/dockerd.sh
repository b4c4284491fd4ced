#!/usr/bin/env bash
# The project's own Docker daemon: `make image`, `make sam-local` and the container tests run
# against it, never against a Docker the user already has. Its own data root, socket and bridge,
# so the stand-in base image (tagged like AWS's public.ecr.aws/lambda/python:3.12, see
# mk/lambda_base.sh) can never reach a later `sam build`/`sam deploy` made with the user's Docker.
# Containers reach only this machine: no iptables rules, no forwarding, no masquerading, and a
# DNS server that does not exist; what they need (wheels, S3) is served on the bridge address.
#
#   mk/dockerd.sh start    install docker.io where it is missing and allowed (Debian, root), start
#   mk/dockerd.sh stop     stop the daemon this script started (by its pid file), remove the bridge
#   mk/dockerd.sh env      print DOCKER_HOST for the shell: eval "$(mk/dockerd.sh env)"
set -euo pipefail

ROOT=${IMAGE_SEARCH_DOCKER_ROOT:-/var/lib/image-search/docker}
RUN=${IMAGE_SEARCH_DOCKER_RUN:-/run/image-search}
SOCKET="$RUN/docker.sock"
PIDFILE="$RUN/dockerd.pid"
BRIDGE=${IMAGE_SEARCH_DOCKER_BRIDGE:-isearch0}
# The address containers reach this machine at (the wheelhouse, moto's S3 in the tests).
BRIDGE_CIDR=${IMAGE_SEARCH_DOCKER_BRIDGE_CIDR:-172.29.0.1/24}

say() { echo "dockerd.sh: $*" >&2; }

alive() { DOCKER_HOST="unix://$SOCKET" docker version >/dev/null 2>&1; }

install_docker() {
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Docker: apt-get install docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq docker.io >/dev/null
    return 0
  fi
  say "no Docker daemon (dockerd) here and no way to install it (needs root and apt-get):"
  say "install Docker Engine, or run as root on Debian/Ubuntu so this script can apt-get docker.io"
  exit 1
}

start() {
  if alive; then
    return 0
  fi
  install_docker
  if [ "$(id -u)" != 0 ]; then
    say "starting dockerd needs root (its own data root $ROOT and bridge $BRIDGE)"
    exit 1
  fi
  mkdir -p "$ROOT" "$RUN"
  # A daemon killed without `stop` leaves its pid file, which dockerd refuses to start over.
  if [ -f "$PIDFILE" ] && ! grep -q dockerd "/proc/$(cat "$PIDFILE")/comm" 2>/dev/null; then
    rm -f "$PIDFILE"
  fi
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  say "starting dockerd: data root $ROOT, socket $SOCKET, bridge $BRIDGE ($BRIDGE_CIDR)"
  # setsid: the daemon outlives the make target that started it (tests and later targets reuse
  # it); `mk/dockerd.sh stop` ends it.
  setsid dockerd \
    --data-root "$ROOT" \
    --exec-root "$RUN/exec" \
    --pidfile "$PIDFILE" \
    -H "unix://$SOCKET" \
    --bridge "$BRIDGE" \
    --iptables=false --ip-forward=false --ip-masq=false --ip6tables=false \
    --dns 127.0.0.1 \
    --containerd-namespace image-search --containerd-plugins-namespace image-search-plugins \
    >"$RUN/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 60); do
    alive && return 0
    sleep 0.5
  done
  say "dockerd did not answer within 30 s; its log ($RUN/dockerd.log) ends with:"
  tail -n 20 "$RUN/dockerd.log" >&2 || true
  exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      # Containers first, so none outlives its daemon's shim.
      DOCKER_HOST="unix://$SOCKET" docker ps -q | xargs -r env DOCKER_HOST="unix://$SOCKET" docker rm -f >/dev/null || true
      kill "$pid"
      for _ in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
    fi
    rm -f "$PIDFILE"
  fi
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link delete "$BRIDGE" || true
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export DOCKER_HOST=unix://$SOCKET" ;;
  address) echo "${BRIDGE_CIDR%/*}" ;;
  *) say "usage: $0 start|stop|env|address"; exit 2 ;;
esac
