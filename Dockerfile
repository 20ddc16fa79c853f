# Vitrina on a Hugging Face Docker Space, CPU hardware (what a fresh Space builds).
# The build stage runs `cargo xtask dist`: CI smoke-tests the layout it makes (with the tests'
# debug server, to keep CI short).
# CUDA (T4): see Dockerfile.cuda.

FROM rust:1-bookworm AS build
# pip fetches the catalogue's models where the Hub is not reachable; npm brings wasm-opt.
# Debian's versions move with its point releases: pinning them would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Models go into the image: a cold start downloads nothing. HF_TOKEN (a Space secret exposed
# at build time) opens private model repositories.
RUN --mount=type=secret,id=HF_TOKEN,required=false \
    HF_TOKEN="$(cat /run/secrets/HF_TOKEN 2>/dev/null || true)" cargo xtask dist --out /dist --prefetch

FROM debian:bookworm-slim
# Debian's versions move with its point releases: pinning them would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 user
COPY --from=build --chown=1000:1000 /dist /app
USER 1000
WORKDIR /app
ENV VITRINA_HOST=0.0.0.0 \
    PORT=7860 \
    VITRINA_MODEL_CACHE=/app/model-cache
EXPOSE 7860
CMD ["./vitrina", "--config", "space.toml", "--site-root", "site"]
