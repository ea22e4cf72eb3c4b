# Qingyu Agent Runtime. The server runs as JavaScript built from src/ (dist/, `npm run build`):
# no TypeScript compiler in memory unless an operator's plugin is TypeScript (tsx then loads it).
# The plugin SDK (packages/plugin-api → dist) is built too; the server and plugins import it as
# @qingyu/plugin-api.

# 1. Dependencies from the lockfile, the SDK and the server built by npm ci's "prepare" (needs
#    the dev dependencies), then the dev dependencies dropped.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY packages/plugin-api/package.json packages/plugin-api/tsconfig.json ./packages/plugin-api/
COPY packages/plugin-api/src ./packages/plugin-api/src
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund && npm cache clean --force

# 2. The runtime image: no npm cache, no dev tools, not root.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY --from=deps /app/packages ./packages
# Built after src/ was copied there, so bin/qingyu.mjs finds it current and runs it.
COPY --from=deps /app/dist ./dist
COPY package.json ./
COPY proto ./proto
COPY src ./src
COPY bin ./bin
COPY scripts ./scripts
COPY plugins ./plugins
COPY config ./config
USER node
# gRPC (grpc-js), HTTP (Connect / gRPC-Web), and the metrics admin port when server.metricsPort is set.
EXPOSE 50051 8080 9464
# config/example.yaml binds HOST (127.0.0.1 outside a container): here every interface, for -p to reach it.
ENV HOST=0.0.0.0
# The gRPC health service, asked by the server's own CLI (no grpc_health_probe to install). The probe
# loads neither TypeScript nor the server (≈0.1 s CPU, ≈47 MB); it asks 127.0.0.1 on PORT, else 50051.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["node", "bin/qingyu.mjs", "health"]
STOPSIGNAL SIGTERM
# `docker kill -s HUP <container>` reloads config and plugins (mount them over /app/config and
# /app/plugins; plugins there import @qingyu/plugin-api and zod from the image's node_modules).
# `docker run … check --config /app/config/x.yaml` validates a config and its plugins.
ENTRYPOINT ["node", "bin/qingyu.mjs"]
CMD ["serve", "--config", "config/example.yaml"]
