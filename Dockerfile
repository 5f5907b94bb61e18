# syntax=docker/dockerfile:1
# DARA with the embedded local workspace (the `local` extra). Build: docker build -t dara .
# DARA_PUBLIC_URL is loopback because the embedded workspace's notebooks run in this
# container; with a real workspace, set it to an address that workspace can reach.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DARA_HOST=0.0.0.0 \
    DARA_PORT=8000 \
    DARA_STATE_DIR=/var/lib/dara \
    DARA_PUBLIC_URL=http://127.0.0.1:8000

# Non-root, with a home directory: notebook kernels keep their runtime files under $HOME.
RUN useradd --create-home --uid 10001 dara \
    && mkdir -p /var/lib/dara \
    && chown dara:dara /var/lib/dara

WORKDIR /srv/dara
COPY . .
# Editable on purpose: app.settings.PROJECT_ROOT is the source tree, where deploy
# finds notebooks/; a regular install would point it into site-packages.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -e ".[local]"

USER dara
# The embedded workspace, its runs and the generated callback secret live here.
VOLUME ["/var/lib/dara"]
EXPOSE 8000

# No curl in the slim image; urlopen raises (exit 1) on refusal or any non-2xx.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('DARA_PORT', '8000'), timeout=4)"]

CMD ["python", "-m", "app"]
