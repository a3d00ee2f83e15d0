# LoMaR images for GPU hosts, two targets from one common base (NVIDIA's Triton container):
#
#   docker build --target serving -t lomar-serving .   # Triton + `lomar gateway` / `lomar control-plane` / `lomar serve`
#   docker build --target worker  -t lomar-worker  .   # `lomar worker`: training, export, verification jobs (torch, CUDA)
#   docker build -t lomar .                             # no --target: the serving image (the last stage)
#
#   docker run --gpus all -p 8000:8000 lomar-serving   # one container, one box: `lomar serve` (gateway + supervised Triton)
#   docker compose up                                  # the fleet: docker-compose.yml, docs/fleet.md
#
# Both run as the non-root user `lomar` (uid 10001). Their one entry point is `lomar`.
#
# The built-in models are copied to /models only as a seed: the model repository that is served and written
# (deploys, exports) is LOMAR_MODEL_REPOSITORY (/var/lib/lomar/repository), a shared volume in a fleet, filled from
# /models on first start by `seed-model-repository` (deploy/docker/seed-model-repository.sh) when it holds no model.
#
# Python packages go into the base image's system Python on purpose: Triton's Python-backend stub runs the exported
# models' model.py (numpy + onnxruntime) with that interpreter.

# The base image, pinned: a release tag (add @sha256:... to pin the exact bytes).
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

FROM ${TRITON_IMAGE} AS base

# PIP_BREAK_SYSTEM_PACKAGES: the system interpreter is the one Triton's Python stub runs (see above); newer Triton
# releases (Ubuntu 24.04) mark it externally managed.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin lomar

WORKDIR /opt/lomar
COPY pyproject.toml README.md constraints.txt constraints-gpu.txt ./
COPY contracts ./contracts
COPY lomar_serve ./lomar_serve
COPY training ./training
COPY export ./export
COPY model_repository /models
COPY --chmod=0755 deploy/docker/seed-model-repository.sh /usr/local/bin/seed-model-repository
COPY --chmod=0755 deploy/docker/http_probe.py /usr/local/bin/http-probe

ENV LOMAR_MODEL_REPOSITORY=/var/lib/lomar/repository \
    LOMAR_JOBS_DIR=/var/lib/lomar/jobs \
    LOMAR_DATA_ROOTS=/var/lib/lomar/data \
    LOMAR_SEED_REPOSITORY=/models

# The shared folders (volumes in docker-compose.yml, PersistentVolumeClaims on Kubernetes) are owned by `lomar`, so
# that a fresh Docker named volume mounted there is writable by the non-root user. The image's own repository
# starts as a copy of the seed: `docker run` without a volume serves the built-in models, and Docker copies them
# into an empty named volume mounted there.
RUN mkdir -p /var/lib/lomar/jobs /var/lib/lomar/data \
    && seed-model-repository \
    && chown -R lomar:lomar /var/lib/lomar


# Training, export and verification jobs: torch from the CUDA wheel index matching the base image's CUDA (12.6 in
# Triton 24.10), versions from constraints.txt; then the project with everything a job runs (`kubernetes`: the
# client of the Kubernetes executor, LOMAR_EXECUTOR=kubernetes).
FROM base AS worker
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
RUN python3 -m pip install --constraint constraints.txt --index-url "${TORCH_INDEX_URL}" torch torchvision \
    && python3 -m pip install --constraint constraints.txt ".[serve,train,export,search,kubernetes]"
USER 10001:10001
# No HTTP port, so no health check: a worker's liveness is its heartbeat in the job store.
HEALTHCHECK NONE
ENTRYPOINT ["lomar"]
CMD ["worker"]


# Serving: Triton, the gateway and the control plane. No torch. onnxruntime (CPU, from the serve extra) and
# onnxruntime-gpu (the gpu extra) install the same module: keep only the GPU one, the build constraints-gpu.txt pins
# to the base image's CUDA and Python. The search extra brings psycopg, the driver of the PostgreSQL job/deploy
# store (and of the pgvector search engine).
FROM base AS serving
RUN python3 -m pip install --constraint constraints.txt ".[serve,search]" \
    && python3 -m pip uninstall -y onnxruntime \
    && python3 -m pip install --constraint constraints.txt --constraint constraints-gpu.txt ".[gpu]"
USER 10001:10001
ENV LOMAR_HOST=0.0.0.0 \
    LOMAR_PORT=8000
# 8000: the gateway (`lomar gateway`, `lomar serve`); 8100: the control plane (`lomar control-plane`).
EXPOSE 8000 8100
# The gateway's readiness on LOMAR_PORT; docker-compose.yml gives Triton and the control plane their own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s \
    CMD ["http-probe", "/readyz"]
ENTRYPOINT ["lomar"]
CMD ["serve"]
