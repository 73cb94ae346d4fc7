# Vigil API image: CPU-only torch, non-root, with a readiness healthcheck (issue 7).
#   docker build -t vigil .          docker run -p 8000:8000 -e VIGIL_DATABASE_URL=... vigil
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first (cached while only code changes). torch/torchvision come from PyTorch's
# CPU index at the versions the project pins; the lock's CUDA builds and GPU libraries are
# dropped, which keeps the image around 1 GB instead of several. Only the runtime
# dependencies (pyproject's `dependencies`, not the `test` extra: no pytest, Playwright,
# fuzzers) are installed, at the lock's versions (the lock as constraints).
COPY requirements.lock pyproject.toml ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && grep -v -E '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==' requirements.lock > /tmp/constraints.txt \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    | grep -v -E '^(torch|torchvision)==' > /tmp/runtime.txt \
 && pip install -r /tmp/runtime.txt -c /tmp/constraints.txt \
 && rm /tmp/constraints.txt /tmp/runtime.txt

# The code, installed in place: migrations/, the shipped bundle and the static pages are
# found next to the packages, as in a checkout.
COPY README.md ./
COPY service ./service
COPY models ./models
COPY training ./training
COPY migrations ./migrations
RUN pip install --no-deps -e . \
 && useradd --system --uid 10001 --home-dir /data --create-home vigil

# Non-root; /data is the only writable place (the request-log spool if the database is down).
USER vigil
WORKDIR /data
ENV VIGIL_HOST=0.0.0.0 VIGIL_PORT=8000
EXPOSE 8000

# Ready = model warmed up and the request log writable (/readyz), not just "process up"; probed
# where VIGIL_HOST and VIGIL_PORT say the server listens (service/healthprobe.py): set those,
# not `vigil serve --host/--port`, or the probe looks elsewhere.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-m", "service.healthprobe"]

# Migrations are a separate one-shot step (`vigil db upgrade`), never run by the API.
CMD ["vigil", "serve"]
