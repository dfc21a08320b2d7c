#!/usr/bin/env bash
# The package as a user installs it (issue 21): `npm pack`, then `npm install -g` of the tarball
# into a temporary prefix and `npx --package` of it; runs the installed bin's --version, --help
# and a short demo (a proxied request and a clean stop).
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
demo_pid=""
cleanup() { [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
say() { printf '    %s\n' "$*"; }
die() { printf 'pack check FAILED: %s\n' "$*" >&2; [ -f "$work/demo.log" ] && tail -20 "$work/demo.log" >&2; exit 1; }

npm pack --silent --pack-destination "$work" >"$work/pack.out" 2>"$work/pack.err" || { cat "$work/pack.err"; die "npm pack failed"; }
tarball="$work/$(tail -1 "$work/pack.out")"
say "packed $(basename "$tarball"): $(($(stat -c %s "$tarball") / 1024)) KiB, $(tar -tzf "$tarball" | wc -l) files"
if tar -tzf "$tarball" | grep -E '^package/(src|test|bench|helm)/' >/dev/null; then die "the package carries sources or tests"; fi

npm install -g --prefix "$work/prefix" --no-audit --no-fund --loglevel=error "$tarball" >/dev/null
bin="$work/prefix/bin/bearer-sidecar"
say "npm install -g: $("$bin" --version)"
"$bin" --help | grep -q '^Usage:' || die "--help prints no usage"
say "--help: $("$bin" --help | head -1)"
say "npx: $(cd "$work" && npx --yes --package "$tarball" bearer-sidecar --version 2>/dev/null)"

# The installed bin's demo from another directory: a proxied request, then SIGTERM exits 0.
(cd "$work" && exec "$bin" demo --listen 127.0.0.1:0 --admin 127.0.0.1:0 --log-format json >"$work/demo.log" 2>&1) &
demo_pid=$!
for _ in $(seq 1 100); do grep -q '"bearer-sidecar listening"' "$work/demo.log" 2>/dev/null && break; sleep 0.1; done
data="$(grep -o '"data":"[^"]*"' "$work/demo.log" | head -1 | cut -d'"' -f4)"
[ -n "$data" ] || die "the demo did not start"
status="$(node -e 'fetch(process.argv[1]).then((r) => console.log(r.status), () => console.log("down"))' "$data/vehicles")"
[ "$status" = 200 ] || die "a proxied request through the installed demo got $status"
say "installed demo: GET /vehicles through the sidecar 200"
kill -TERM "$demo_pid"
code=0
wait "$demo_pid" || code=$?
demo_pid=""
[ "$code" = 0 ] || die "the demo exited $code on SIGTERM"
say "installed demo: SIGTERM, exit 0"
