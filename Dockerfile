# LoMaR serving image for GPU hosts: NVIDIA's Triton container with the lomar gateway installed.
#
#   docker build -t lomar .
#   docker run --gpus all -p 8000:8000 lomar                       # gateway + supervised Triton, one container
#   docker compose up                                             # Triton and the gateway as two services
#
# One entry point, `lomar`: `serve` (default) launches Triton on /models and the gateway on 0.0.0.0:8000;
# `serve --triton-url HOST:PORT` fronts a Triton running elsewhere (docker-compose.yml); `classify`, `embed`,
# `reconstruct` are the command-line client. Triton's own ports stay on 127.0.0.1 inside the container.
#
# Standalone `lomar serve` runs the Triton binary bundled with nvidia-pytriton (Python backend: the exported
# models' ONNX Runtime runner, CUDA provider on the GPU). docker-compose.yml runs the container's native
# /opt/tritonserver instead, which also has the onnxruntime and tensorrt backends for `lomar export
# --backend onnxruntime|tensorrt` versions.
ARG TRITON_VERSION=24.10
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/lomar
# Dependencies first (cached layer), then the code.
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY lomar_serve ./lomar_serve
# onnxruntime (CPU, from the serve extra) and onnxruntime-gpu install the same module: keep only the GPU one.
RUN python3 -m pip install ".[serve]" \
    && python3 -m pip uninstall -y onnxruntime \
    && python3 -m pip install onnxruntime-gpu

# The built-in default models; mount your own repository over /models.
COPY model_repository /models

ENV LOMAR_MODEL_REPOSITORY=/models \
    LOMAR_HOST=0.0.0.0 \
    LOMAR_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s \
    CMD python3 -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
ENTRYPOINT ["lomar"]
CMD ["serve"]
