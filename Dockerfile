# syntax=docker/dockerfile:1
# The fleetgate image (manifests/ name it ghcr.io/fleetgate/fleetgate:<version>):
#   docker build -t ghcr.io/fleetgate/fleetgate:0.1.0 .
#   docker run --rm ghcr.io/fleetgate/fleetgate:0.1.0 --version
# Stage 1 builds one wheel with the compiled codecs (Cython + a C compiler) plus wheels of
# every dependency; stage 2 installs them into a slim Python with no compiler and runs as
# a non-root user. tests/fleetgate/test_image.py runs stage 2's install steps in a fresh
# virtual environment from a freshly built wheel, so the packaging is checked without Docker.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# fleetgate's own wheel (build isolation fetches setuptools, wheel, Cython), then the
# dependencies' wheels beside it, so the final stage installs offline
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/fleetgate-*.whl

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels fleetgate
RUN python -c "import gateway.codec._http1, gateway.codec._chunked, dnsplugin.codec._fastpath"
RUN useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin fleetgate
USER 65532:65532
# gateway http/https, admin; the DNS responder listens on 1053 (unprivileged)
EXPOSE 8080 8443 9901 1053/udp 1053/tcp
ENTRYPOINT ["fleetgate"]
CMD ["--help"]
