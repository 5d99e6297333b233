# rekey's image: `rekey worker` in docker-compose.yml, or any CLI command (`docker run IMAGE doctor`).
# Both stages run the Node release the project pins for itself (package.json devDependency `node`, which
# the tests and benchmarks run on); test/unit/deploy/dockerfile.test.ts holds the two to the same version.

FROM node:24.22.3-bookworm-slim AS build
WORKDIR /app
# Dependencies before sources, so a source change reuses the cached install. --ignore-scripts because
# `prepare` would build before the sources are copied; the build runs on its own below.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY . .
RUN npm run build

FROM node:24.22.3-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# --ignore-scripts: `prepare` would run the build, and the compiler is a dev dependency.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The image's files stay root's; the process runs as the unprivileged `node` user of the base image.
USER node
EXPOSE 9464
ENTRYPOINT ["node", "bin/rekey.js"]
CMD ["--help"]
