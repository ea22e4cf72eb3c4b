# Qingyu Agent Runtime. Runs from source: tsx loads TypeScript (ours and users' plugins) with no build step.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY proto ./proto
COPY src ./src
COPY bin ./bin
COPY plugins ./plugins
COPY config ./config
USER node
# gRPC (grpc-js) and HTTP (Connect / gRPC-Web).
EXPOSE 50051 8080
# grpc-health-probe or any gRPC health check works against grpc.health.v1.Health on 50051.
STOPSIGNAL SIGTERM
# `docker kill -s HUP <container>` reloads config and plugins (mount them over /app/config and /app/plugins).
ENTRYPOINT ["node", "bin/qingyu.mjs"]
CMD ["serve", "--config", "config/example.yaml"]
