FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p burnwatch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/burnwatch /usr/local/bin/burnwatch
# The shipped SLOs and alert rules (the demo shop's, and the examples users
# copy). Mount a directory over this path to use your own.
COPY alert-rules /etc/burnwatch/alert-rules
ENV BURNWATCH_RULES_DIR=/etc/burnwatch/alert-rules
WORKDIR /var/lib/burnwatch
EXPOSE 4317 4318 8080
ENTRYPOINT ["burnwatch"]
