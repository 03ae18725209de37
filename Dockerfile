# The daemon's image: a static-enough release build on Debian, run from distroless as the
# non-root user deploy/base/deployment.yaml expects (65532), with nothing else inside: no
# shell, no package manager, no trust store (TLS trusts the built-in Mozilla roots or the
# policy's caFile). Build: docker build -t registry.example/redis-autopilot:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change rebuilds only the crate.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin redis-autopilot \
    && rm -rf src
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin redis-autopilot

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/redis-autopilot /usr/local/bin/redis-autopilot
USER 65532:65532
# The Deployment passes only args, so the entrypoint is the binary itself.
ENTRYPOINT ["/usr/local/bin/redis-autopilot"]
CMD ["run", "--policies=/etc/redis-autopilot/policies"]
