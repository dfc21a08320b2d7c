#!/usr/bin/env bash
# Builds the real Dockerfile with Debian's podman and runs the image as a user would (issue 21).
# No container registry is reachable on CI machines, so the base image is a local stand-in
# (.ci/image-base.sh, cached). Checks: /healthz, a proxied request through the demo, the health
# check, the non-root user, a clean stop (exit 0 within 10 s of `podman stop`); prints the size.
#
#   .ci/image-check.sh [CACHE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/bearer-sidecar-ci}"
started=$SECONDS
image=bearer-sidecar:ci
name="bearer-sidecar-ci-$$"
work="$(mktemp -d)"
cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
say() { printf '    %s\n' "$*"; }
die() { printf 'image check FAILED: %s\n' "$*" >&2; podman logs "$name" 2>&1 | tail -20 >&2 || true; exit 1; }

need=()
for tool in podman buildah runc iptables debootstrap; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]} (Debian packages)"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    podman buildah runc iptables debootstrap >/dev/null
fi
bash .ci/image-base.sh "$cache"

# npm ci inside the build must trust what the host's npm trusts (a TLS-inspecting proxy's CA):
# mount an npmrc naming the host's CA bundle; build-time mounts leave nothing in the image.
build_mounts=()
cafile="$(npm config get cafile 2>/dev/null || true)"
if [ -n "$cafile" ] && [ "$cafile" != "null" ] && [ -f "$cafile" ]; then
  mkdir -p "$work/etc"
  printf 'cafile=/run/ci-ca/%s\n' "$(basename "$cafile")" >"$work/etc/npmrc"
  build_mounts+=(-v "$work/etc:/usr/local/etc:ro" -v "$(dirname "$cafile"):/run/ci-ca:ro")
fi
build_started=$SECONDS
# --format docker keeps HEALTHCHECK (the OCI format drops it).
podman build --quiet --pull=never --format docker "${build_mounts[@]}" -t "$image" \
  --build-arg VERSION="$(node -p 'require("./package.json").version')" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" . >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log"; die "podman build failed"; }
say "built $image in $((SECONDS - build_started)) s"

ports="$(node -e '
  const net = require("node:net");
  const free = () => new Promise((r) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => r(p)); }); });
  Promise.all([free(), free()]).then((p) => console.log(p.join(" ")));')"
read -r data_port admin_port <<<"$ports"
# --runtime runc: crun refuses these machines' cgroup set-up; the ulimits: the sandbox cannot raise
# limits to podman's defaults; --network host: the sidecar listens on 127.0.0.1; no health timer
# (podman schedules it through systemd, absent here): the check is run once by hand below.
podman run -d --name "$name" --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
  --network host --read-only --health-interval disable -e BEARER_SIDECAR_ADMIN="127.0.0.1:$admin_port" \
  "$image" demo --listen "127.0.0.1:$data_port" --log-format json >/dev/null 2>"$work/run.err" ||
  { cat "$work/run.err"; die "podman run failed"; }

fetch() { node -e '
  fetch(process.argv[1]).then(async (r) => { console.log(r.status); process.exit(0); }, () => { console.log("down"); });' "$1"; }
for _ in $(seq 1 100); do [ "$(fetch "http://127.0.0.1:$admin_port/healthz")" = 200 ] && break; sleep 0.2; done
[ "$(fetch "http://127.0.0.1:$admin_port/healthz")" = 200 ] || die "/healthz did not answer 200"
say "/healthz 200 on the admin address given by BEARER_SIDECAR_ADMIN"
for _ in $(seq 1 50); do [ "$(fetch "http://127.0.0.1:$data_port/vehicles")" = 200 ] && break; sleep 0.2; done
[ "$(fetch "http://127.0.0.1:$data_port/vehicles")" = 200 ] || die "a proxied request did not get 200"
say "proxied GET /vehicles 200 (the demo API refuses requests without a fresh token)"
podman healthcheck run "$name" >/dev/null || die "the image's HEALTHCHECK fails on a changed admin address"
say "HEALTHCHECK passes (it follows the changed admin address)"
uid="$(podman exec "$name" id -u)"
[ "$uid" != 0 ] || die "runs as root"
say "runs as uid $uid (non-root), read-only root file system"
stop_started=$SECONDS
podman stop -t 10 "$name" >/dev/null 2>"$work/stop.err" || { cat "$work/stop.err"; die "podman stop failed"; }
stop_seconds=$((SECONDS - stop_started))
code="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
[ "$code" = 0 ] || die "exit code $code after podman stop (expected 0)"
[ "$stop_seconds" -lt 10 ] || die "took ${stop_seconds} s to stop (SIGTERM not handled?)"
say "podman stop: exit 0 after ${stop_seconds} s"
size="$(podman image inspect --format '{{.Size}}' "$image")"
say "image size $((size / 1024 / 1024)) MiB on the stand-in base (base $(($(podman image inspect --format '{{.Size}}' node:24-bookworm-slim) / 1024 / 1024)) MiB)"
say "image check passed in $((SECONDS - started)) s"
