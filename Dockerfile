# syntax=docker/dockerfile:1
# Build stage: the same single pip resolve as the Makefile, into a virtualenv we copy out.
FROM python:3.11-slim-bookworm AS build
WORKDIR /app
RUN python -m venv /opt/venv
COPY setup.cfg pyproject.toml README.md ./
COPY service ./service
COPY sql ./sql
RUN /opt/venv/bin/pip install --quiet --upgrade pip \
 && /opt/venv/bin/pip install --quiet -e .

# Runtime stage: no compilers, a non-root user, the service and its migrations.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH VAULT_DATA_DIR=/var/lib/vault LOG_FORMAT=json
RUN useradd --system --create-home --home-dir /var/lib/vault vault
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER vault
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health/ready', timeout=2).status != 200)"
CMD ["vault-service", "serve"]
