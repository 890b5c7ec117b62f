# One image for every docker-compose service: the HTTP API (uvicorn), the Ray head and the Ray workers.
#   docker compose build                                     # CUDA-enabled torch from PyPI (GPU hosts)
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu   # CPU-only, much smaller
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
ARG TORCH_INDEX=""
COPY pyproject.toml README.md ./
COPY emulator emulator
COPY physics_data physics_data
COPY services services
COPY pipelines pipelines
# the shipped models: the registry finds models/ next to the packages (editable install)
COPY models models
RUN pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -e '.[ray]' \
    && useradd --create-home --uid 1000 emulator \
    && mkdir -p /data/models /data/outputs \
    && chown -R emulator /data

USER emulator
# user-trained models go to the shared volume; outputs (generated files, runs) next to them
ENV EMULATOR_MODELS_PATH=/data/models
WORKDIR /data/outputs
EXPOSE 8000
CMD ["emulator", "serve", "--host", "0.0.0.0", "--port", "8000"]
