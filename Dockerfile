# syntax=docker/dockerfile:1
# cx-survey image: a builder stage resolves dependencies into a virtualenv; the runtime stage
# copies that virtualenv and the source tree (app/, migrations/, alembic.ini) to the same paths
# and runs as an unprivileged user. Configure with CX_* variables; CX_DATABASE_URL should point
# at a real PostgreSQL (without it the embedded server keeps its data in CX_DATA_DIR).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /srv/cx-survey
# Dependencies first, so that a code-only change reuses this layer.
COPY pyproject.toml README.md ./
COPY app/__init__.py app/__init__.py
RUN pip install --upgrade "pip>=24" && pip install .
COPY app app
COPY migrations migrations
COPY alembic.ini ./
# Editable install: migrations/ and alembic.ini are found next to the app package.
RUN pip install --no-deps -e . && python -m compileall -q app migrations

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CX_DATA_DIR=/var/lib/cx-survey
RUN groupadd --system --gid 10001 cx \
    && useradd --system --uid 10001 --gid cx --home-dir /srv/cx-survey --shell /usr/sbin/nologin cx \
    && mkdir -p /var/lib/cx-survey \
    && chown cx:cx /var/lib/cx-survey
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /srv/cx-survey /srv/cx-survey
WORKDIR /srv/cx-survey
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2).status == 200 else 1)"]
CMD ["cx-survey", "serve", "--host", "0.0.0.0", "--port", "8000"]
