FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p burnwatch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/burnwatch /usr/local/bin/burnwatch
EXPOSE 4317 4318 8080
ENTRYPOINT ["burnwatch"]
