# bearer-sidecar container image.
#
#   docker build -t bearer-sidecar:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm --network host -v "$PWD/config.yaml:/etc/bearer-sidecar/config.yaml:ro" \
#     --read-only bearer-sidecar:0.1.0
#
# The sidecar listens on 127.0.0.1 (the config's listen.host), so publishing ports (-p 8080:8080)
# cannot reach it: share the host's network as above (or a pod's, in Kubernetes), or set listen.host
# and admin.host to 0.0.0.0 and add the callers' network to inbound.allow.
# No `# syntax=` line: it would make `docker build` fetch a frontend image from a registry.
#
# Multi-stage: `build` compiles TypeScript with the dev dependencies; `deps` installs the
# production dependencies only; the final stage holds those and dist/, runs as a numeric
# non-root user, writes nothing outside /var/lib/bearer-sidecar and /tmp (so it runs with a
# read-only root filesystem), and starts Node directly (exec form) so SIGTERM reaches it and
# bearer-sidecar drains (no init process needed: Node handles the signal itself).
# Pin NODE_IMAGE to a digest (node:24-bookworm-slim@sha256:...) for reproducible builds.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/ scripts/
COPY src/ src/
RUN npm run build

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="bearer-sidecar" \
      org.opencontainers.image.description="A local authenticating reverse proxy: plain requests in, Authorization: Bearer <fresh token> out." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
ENV NODE_ENV=production
# A numeric user (Kubernetes' runAsNonRoot can only verify a numeric one) and the state directory
# it owns; everything else stays root-owned and read-only to it.
RUN groupadd --system --gid 10001 bearer-sidecar \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin bearer-sidecar \
 && mkdir -p /var/lib/bearer-sidecar /etc/bearer-sidecar \
 && chown 10001:10001 /var/lib/bearer-sidecar \
 && chmod 0700 /var/lib/bearer-sidecar
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
USER 10001:10001
VOLUME ["/var/lib/bearer-sidecar"]
# Data plane and admin (/metrics /healthz /readyz /status). In a container, set listen.host and
# admin.host to 0.0.0.0 unless only the pod's own containers call it (sidecar: 127.0.0.1).
EXPOSE 8080 9464
# The health check finds the admin address as serve does (BEARER_SIDECAR_ADMIN, else the config
# file's admin, else 127.0.0.1:9464); it cannot see flags on the command line.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["node", "/app/dist/healthcheck.js"]
# V8 flags sized for a sidecar (docs/performance.md "Memory"): a young generation of at most 4 MiB per
# semi-space (Node 24's default grows to 64 MiB of new space under load) and WebAssembly kept at
# its baseline compiler (recompiling undici's llhttp parser once hot is a ~33 MiB transient).
# Measured on Node 24 under load: RSS 105-180 MiB with them, up to 317 MiB without.
# For Node's defaults: docker run --entrypoint node IMAGE /app/dist/cli.js --config ...
ENTRYPOINT ["node", "--max-semi-space-size=4", "--liftoff-only", "/app/dist/cli.js"]
CMD ["--config", "/etc/bearer-sidecar/config.yaml"]
