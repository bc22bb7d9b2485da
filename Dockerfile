# Tollgate: the SPA and the API in one image.
# Build: docker build -t tollgate .    Run: see docker-compose.yml

# 1. The SPA.
FROM node:20-bookworm-slim AS spa
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY openapi.yaml /src/openapi.yaml
COPY frontend/ ./
RUN npm run build

# 2. The release binary.
FROM rust:1.95-bookworm AS server
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY .cargo/ .cargo/
COPY allocator/ allocator/
COPY migrations/ migrations/
COPY backend/ backend/
COPY vendor/ vendor/
RUN cargo build --release --locked -p tollgate && strip target/release/tollgate

# 3. A slim runtime, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --create-home tollgate
WORKDIR /app
COPY --from=server /src/target/release/tollgate /usr/local/bin/tollgate
COPY --from=spa /src/frontend/dist /app/frontend/dist
ENV BIND=0.0.0.0:8080 \
    FRONTEND_DIR=/app/frontend/dist \
    TOLLGATE_DATA_DIR=/app/data \
    RUST_LOG=info
RUN mkdir -p /app/data && chown tollgate /app/data
USER tollgate
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["tollgate"]
CMD ["serve"]
