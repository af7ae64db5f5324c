# job-archiver: `archiver run` in a container. See docs/operations.md ("In a container").
#
#   docker build -t job-archiver .
#   docker run --rm --env-file archiver.env job-archiver db upgrade      # once, before the workers
#   docker run -d --name archiver --env-file archiver.env -p 9464:9464 \
#       --stop-timeout 150 job-archiver
#
# --stop-timeout: on SIGTERM the daemon finishes its in-flight jobs for up to 2 x the request
# deadline (60 s by default); Docker's default of 10 s would SIGKILL it mid-job (nothing is
# half-written, each job is one transaction, but the leases then wait for their expiry).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/job-archiver/venv/bin:$PATH

# Only what the package build needs (.dockerignore keeps the rest out of the context). The
# drivers' wheels are prebuilt (psycopg[binary], PyMySQL): no compiler in the image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY archiver ./archiver
RUN python -m venv /opt/job-archiver/venv \
    && pip install ".[postgres,mysql]" \
    && rm -rf /src

# A non-root user; /data is its writable working directory, where the embedded SQLite default
# (sqlite:///archiver.db) and its one-daemon lock file live. Mount a volume there for SQLite.
RUN groupadd --system --gid 10001 archiver \
    && useradd --system --uid 10001 --gid archiver --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin archiver \
    && mkdir /data && chown archiver:archiver /data
WORKDIR /data
USER archiver:archiver

EXPOSE 9464
STOPSIGNAL SIGTERM
# /healthz answers 503 with the problems (database unreachable or behind the code, key rejected,
# no successful pass for 3 intervals); the start period covers a long first pass.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request\ntry:\n    urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=5)\nexcept urllib.request.HTTPError as exc:\n    sys.exit(exc.read().decode(errors='replace')[:1000])\nexcept OSError as exc:\n    sys.exit(f'unhealthy: {exc}')"]

ENTRYPOINT ["archiver"]
CMD ["run", "--metrics-port", "9464", "--metrics-host", "0.0.0.0", "--log-format", "json"]
