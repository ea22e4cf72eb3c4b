# Qingyu Agent Runtime. Runs from source: tsx loads TypeScript (ours and operators' plugins)
# with no build step, so the image is the production dependencies plus the source.

# 1. Production dependencies, installed from the lockfile.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# 2. The runtime image: no npm cache, no dev tools, not root.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY proto ./proto
COPY src ./src
COPY bin ./bin
COPY plugins ./plugins
COPY config ./config
USER node
# gRPC (grpc-js), HTTP (Connect / gRPC-Web), and the metrics admin port when server.metricsPort is set.
EXPOSE 50051 8080 9464
# The gRPC health service, asked by the server's own CLI (no grpc_health_probe to install).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["node", "bin/qingyu.mjs", "health", "--address", "127.0.0.1:50051"]
STOPSIGNAL SIGTERM
# `docker kill -s HUP <container>` reloads config and plugins (mount them over /app/config and /app/plugins).
ENTRYPOINT ["node", "bin/qingyu.mjs"]
CMD ["serve", "--config", "config/example.yaml"]
