# readiness-operator image: a virtualenv built in one stage and copied into a slim runtime stage
# that has no compiler, runs as UID/GID 65532 and writes nothing to its root filesystem.
#   docker build -t <registry>/readiness-operator:0.1.0 .

# One base for both stages: the venv's interpreter is a symlink to the base image's Python,
# so the two stages must never drift apart.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/readiness
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
# The same pins as development and CI. The bytecode is compiled once, unchecked-hash: a
# timestamp .pyc goes stale when a builder rounds sub-second mtimes into the layer tar (buildah
# does), and the read-only runtime would then recompile those modules at every start.
RUN /opt/readiness/bin/pip install --no-compile --constraint constraints.txt . \
 && /opt/readiness/bin/python -m compileall -q -f --invalidation-mode unchecked-hash /opt/readiness \
 && /opt/readiness/bin/python -c "import readiness.runtime.app" \
 && /opt/readiness/bin/readiness --version

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="readiness-operator" \
      org.opencontainers.image.description="Makes Kubernetes Deployments production-ready and keeps them so" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/readiness /opt/readiness
# HOME points at the pod's /tmp emptyDir: UID 65532 has no passwd entry and the root
# filesystem is mounted read-only.
ENV PATH=/opt/readiness/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Numeric, so that Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["readiness"]
CMD ["run"]
