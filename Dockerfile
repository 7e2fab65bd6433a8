# syntax=docker/dockerfile:1
# driftline: one image for every subcommand (worker, traffic, demo, embedded).
#
#   docker build -t driftline .
#   docker run --rm driftline --help
#
# Settings come from DRIFTLINE_* environment variables (README, streams/settings.py); see
# docker-compose.yml for a full stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, read from pyproject.toml into a layer of their own, so that a code
# change does not reinstall them: the base install with the worker and agent extras. The
# embedded stack (tansu and chdb's ClickHouse engine, several hundred MB) is left out:
# the compose stack runs Apache Kafka and a ClickHouse server instead.
ARG EXTRAS="worker agent"
COPY pyproject.toml /tmp/driftline/pyproject.toml
RUN python -c "import sys, tomllib; p = tomllib.load(open('/tmp/driftline/pyproject.toml', 'rb'))['project']; print(*p['dependencies'], *(d for e in sys.argv[1:] for d in p['optional-dependencies'][e]), sep='\n')" $EXTRAS \
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
