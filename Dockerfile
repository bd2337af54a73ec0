# syntax=docker/dockerfile:1
# remote-executor container image.
#
#   docker build -t remote-executor .                  # default: may build dynamic venvs with pip
#   docker build -t remote-executor:locked --target locked .   # no pip/uv, bundled venvs only
#   docker build --build-arg BUNDLED_VENV_PLUGINS="file,snowflake,postgres" \
#                --build-arg BUNDLED_CLI_VERSION=1.7.0.17 -t remote-executor .
#
# Stages: build (the executor in its own venv) -> venvs (bundled recipe venvs, one per plugin)
# -> base (runtime files, non-root user 1000) -> locked | runtime (the default, last).
# Every venv is built on the same Python base image as the one that runs it, at the same path,
# because a venv records absolute paths and links to the base interpreter.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Source types (a recipe's source.type), not sinks: venvs are looked up by source type.
ARG BUNDLED_VENV_PLUGINS="file"
ARG BUNDLED_CLI_VERSION="1.7.0.17"

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY executor ./executor
RUN python -m venv /opt/remote-executor \
 && /opt/remote-executor/bin/pip install --no-cache-dir /src \
 && /opt/remote-executor/bin/remote-executor --version

FROM build AS venvs
ARG BUNDLED_VENV_PLUGINS
ARG BUNDLED_CLI_VERSION
# One venv per plugin under /opt/datahub/venvs/<plugin>-bundled, as DataHub's images lay them out.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p /opt/datahub/venvs \
 && IFS=',' read -ra plugins <<< "${BUNDLED_VENV_PLUGINS}" \
 && for plugin in "${plugins[@]}"; do \
      plugin="${plugin// /}"; \
      [ -n "${plugin}" ] || continue; \
      /opt/remote-executor/bin/remote-executor venv build --plugin "${plugin}" \
        --cli-version "${BUNDLED_CLI_VERSION}" --root /opt/datahub/venvs || exit 1; \
      test -x "/opt/datahub/venvs/${plugin}-bundled/bin/datahub" || exit 1; \
    done

FROM ${PYTHON_IMAGE} AS base
ARG BUNDLED_VENV_PLUGINS
ARG BUNDLED_CLI_VERSION
LABEL org.opencontainers.image.title="remote-executor" \
      org.opencontainers.image.description="Self-hosted executor for DataHub metadata ingestion" \
      org.opencontainers.image.licenses="Apache-2.0"
# UID/GID 1000, as DataHub's executor chart expects (runAsUser: 1000). UID/GID 1001 "recipe" is
# the user recipes run as when the executor is started as root (docs/security.md):
#   docker run --user 0 --cap-drop ALL --cap-add SETUID --cap-add SETGID --cap-add KILL \
#     --cap-add CHOWN --cap-add DAC_OVERRIDE -e REMOTE_EXECUTOR_RUN_AS=recipe ... remote-executor
# The default (USER 1000 below, no capabilities) cannot switch users: recipes then run as 1000
# and `doctor` says what they can reach; add -e REMOTE_EXECUTOR_ISOLATION=bwrap where possible.
RUN groupadd --system --gid 1000 remote-executor \
 && useradd --system --uid 1000 --gid 1000 --home-dir /var/lib/remote-executor \
      --shell /usr/sbin/nologin remote-executor \
 && groupadd --system --gid 1001 recipe \
 && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin recipe \
 && install -d -m 0700 -o 1000 -g 1000 /var/lib/remote-executor \
 && install -d -m 0711 -o 1000 -g 1000 /var/lib/remote-executor-work
COPY --from=build /opt/remote-executor /opt/remote-executor
COPY --from=venvs /opt/datahub/venvs /opt/datahub/venvs
ENV PATH=/opt/remote-executor/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATAHUB_BUNDLED_VENV_PATH=/opt/datahub/venvs \
    BUNDLED_VENV_PLUGINS=${BUNDLED_VENV_PLUGINS} \
    BUNDLED_CLI_VERSION=${BUNDLED_CLI_VERSION} \
    REMOTE_EXECUTOR_STATE_DIR=/var/lib/remote-executor \
    REMOTE_EXECUTOR_OBSERVABILITY_HOST=0.0.0.0 \
    REMOTE_EXECUTOR_OBSERVABILITY_PORT=9087
WORKDIR /var/lib/remote-executor
EXPOSE 9087
STOPSIGNAL SIGTERM
# Docker's own health check; Kubernetes uses the chart's probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('REMOTE_EXECUTOR_OBSERVABILITY_PORT', '9087'), timeout=4)"]
USER 1000:1000
ENTRYPOINT ["remote-executor"]
CMD ["run"]

# Locked: nothing can be installed at run time. pip, uv and ensurepip are removed from the base
# Python and from every venv, and any installer that survives is pointed at a closed port. On a
# Debian base (python3-venv) `python -m venv` gets pip from Debian's ensurepip and the wheels in
# /usr/share/python-wheels: both go too, so a new venv has no pip either.
FROM base AS locked
USER 0
RUN rm -rf /usr/local/bin/pip* /usr/local/bin/uv /usr/local/bin/uvx \
      /usr/local/lib/python3*/site-packages/pip /usr/local/lib/python3*/site-packages/pip-* \
      /usr/local/lib/python3*/ensurepip /usr/lib/python3*/ensurepip /usr/share/python-wheels \
      /usr/bin/pip /usr/bin/pip3* /usr/lib/python3/dist-packages/pip \
      /opt/remote-executor/bin/pip* /opt/remote-executor/bin/uv /opt/remote-executor/bin/uvx \
      /opt/remote-executor/lib/python3*/site-packages/pip /opt/remote-executor/lib/python3*/site-packages/pip-* \
      /opt/datahub/venvs/*/bin/pip* /opt/datahub/venvs/*/bin/uv /opt/datahub/venvs/*/bin/uvx \
      /opt/datahub/venvs/*/lib/python3*/site-packages/pip /opt/datahub/venvs/*/lib/python3*/site-packages/pip-* \
      /opt/datahub/venvs/*/lib/python3*/site-packages/uv /opt/datahub/venvs/*/lib/python3*/site-packages/uv-* \
 && ! python -m pip --version 2>/dev/null \
 && ! python -m ensurepip --version 2>/dev/null
ENV INGESTION_DEPENDENCY_RESOLUTION_ENABLED=false \
    PIP_INDEX_URL=http://127.0.0.1:1/simple \
    PIP_EXTRA_INDEX_URL="" \
    UV_INDEX_URL=http://127.0.0.1:1/simple \
    UV_DEFAULT_INDEX=http://127.0.0.1:1/simple \
    UV_EXTRA_INDEX_URL="" \
    UV_INDEX=""
USER 1000:1000

# The default target (last stage): dynamic venvs are allowed where the config allows them.
FROM base AS runtime
