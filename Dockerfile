# A small runtime image of offload-bridge with its server stack (ingress, worker, simulator); the entrypoint is
# the `offload-bridge` CLI.
# BASE_IMAGE: any image with Python 3.11+ where `python` and `pip` are on PATH and `useradd` exists (the official
# one by default; `make container-test` builds a Debian one where no image registry is reachable).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY offload_bridge ./offload_bridge
COPY ingress ./ingress
COPY streams ./streams
COPY schemas ./schemas
COPY simulator ./simulator
# The project's wheel and a wheel of every dependency of the `server` extra.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server]"

FROM ${BASE_IMAGE}
# The worker keeps its tables (RocksDB) in /home/bridge/worker-data, where docker-compose.yml mounts the
# worker-data volume; the exporter writes Parquet under /home/bridge/tables (the analytics-tables volume).
# The directories must exist in the image, owned by the runtime user: an empty named volume starts as a
# copy of what the image has at its mount point, owner included, and a path the image lacks would become a
# root-owned volume the process cannot write.
RUN useradd --create-home --uid 10001 bridge \
    && install -d -o bridge -g bridge /home/bridge/worker-data \
    && install -d -o bridge -g bridge /home/bridge/tables
ENV OFFLOAD_WORKER_DATA_DIR=/home/bridge/worker-data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "offload-bridge[server]" && rm -rf /wheels
USER bridge
WORKDIR /home/bridge
ENTRYPOINT ["offload-bridge"]
CMD ["--help"]
