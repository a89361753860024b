# readiness-operator image: build a virtualenv in one stage, copy it into a slim runtime stage
# that has no compiler, runs as UID 65532 and writes nothing to its root filesystem.
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/readiness
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
RUN /opt/readiness/bin/pip install --constraint constraints.txt . \
 && /opt/readiness/bin/python -m compileall -q /opt/readiness

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="readiness-operator" \
      org.opencontainers.image.description="Makes Kubernetes Deployments production-ready and keeps them so" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/readiness /opt/readiness
# Bytecode is compiled at build time; nothing is written at run time (read-only root filesystem).
ENV PATH=/opt/readiness/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["readiness"]
CMD ["run"]
