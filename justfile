# opsflow tasks. `just` comes from `pip install rust-just` or `cargo install just`.

# Run the embedded default (sled in ./.opsflow, gRPC + HTTP on 127.0.0.1:7070).
dev:
    cargo run --release -p opsflow -- dev

# The embedded default with the built-in event generator.
demo:
    cargo run --release -p opsflow -- dev --demo

# The whole test suite (what CI runs after fmt and clippy).
test:
    scripts/test

# Benchmarks: prints a table of measured figures. `just bench --quick` for a smoke run.
# The NATS rows need nats-server, installed as scripts/test installs it (without
# it, the other rows still run and the NATS rows fail saying how to get it).
bench *ARGS:
    bash -c 'source scripts/nats-server-env; opsflow_nats_server_env || true; exec cargo run --release -p opsflow-bench -- "$@"' bench {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Everything CI runs.
ci:
    .ci/run
