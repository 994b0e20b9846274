# trainhook's container image: one static binary FROM scratch, no shell.
#
# The binary and the files beside it come from scripts/image.sh, which builds
# them and then runs `podman build` (or `docker build`) on this file:
#
#   scripts/image.sh            # builds localhost/trainhook:<version> and :latest
#
# Run it with a volume for /data, where the SQLite database lives:
#
#   podman run -d --name trainhook -p 8080:8080 -v trainhook-data:/data \
#     -e TRAINHOOK_API_TOKEN=<32+ random characters> -e APP_URL=https://trainhook.example.com \
#     -e REPLICATE_API_TOKEN=r8_... localhost/trainhook:latest
#
# docs/deploy.md has the rest (TLS, PostgreSQL, backups, Prometheus).
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="trainhook" \
      org.opencontainers.image.description="Keeps model records true to the outcome of their Replicate trainings: webhooks, polling, API and dashboard" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.documentation="docs/deploy.md"

# rootfs/ holds the binary, the CA certificates the Replicate client needs
# for TLS and an empty /tmp (mode 1777) for SQLite's temporary files; COPY
# keeps their modes. /data, where the database lives, belongs to the
# unprivileged user the server runs as.
COPY rootfs/ /
COPY --chown=65532:65532 data/ /data/

# No /etc/passwd: the user is a number. 65532 is the conventional "nonroot".
USER 65532:65532
ENV DATABASE_URL=/data/trainhook.db \
    ADDR=:8080 \
    TMPDIR=/tmp \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
VOLUME ["/data"]
WORKDIR /data
EXPOSE 8080
STOPSIGNAL SIGTERM
# Needs no token: /readyz is open to probes. The Docker image format keeps
# HEALTHCHECK; podman builds it with --format docker (image.sh does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/trainhook", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/trainhook"]
CMD ["serve"]
