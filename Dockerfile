# Builds the demo worker, the `celeriac` CLI and the stocks example's service
# and worker into a small runtime image.
# Used by compose.yaml; run `docker compose up --build`.

FROM rust:1.89-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p celeriac-demo -p celeriac-admin -p celeriac-example-stocks

FROM debian:bookworm-slim
# CA certificates for amqps:// brokers and TLS trace collectors.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/target/release/celeriac-demo-worker /usr/local/bin/
COPY --from=builder /src/target/release/celeriac /usr/local/bin/
COPY --from=builder /src/target/release/stocks-service /usr/local/bin/
COPY --from=builder /src/target/release/stocks-worker /usr/local/bin/
RUN useradd --system --no-create-home --shell /usr/sbin/nologin celeriac
# lapin parses header tables recursively on its I/O thread: a 64 MiB stack
# (address space, used only when touched) survives the deepest nesting a
# 128 KiB frame can hold, instead of aborting the worker
# (docs/operations.md, "Deeply nested headers").
ENV RUST_MIN_STACK=67108864
USER celeriac
# The worker finishes its in-flight tasks on SIGTERM, then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT []
CMD ["celeriac-demo-worker"]
