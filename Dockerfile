# A small runtime image of offload-bridge with its server stack (ingress, worker, simulator); the entrypoint is
# the `offload-bridge` CLI.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY offload_bridge ./offload_bridge
COPY ingress ./ingress
COPY streams ./streams
COPY schemas ./schemas
COPY simulator ./simulator
# The project's wheel and a wheel of every dependency of the `server` extra.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 bridge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "offload-bridge[server]" && rm -rf /wheels
USER bridge
WORKDIR /home/bridge
ENTRYPOINT ["offload-bridge"]
CMD ["--help"]
