# recsys: one image for the API (`recsys serve`) and the retraining job (`python -m jobs.retrain`).
# Build: docker build -t recsys .   Run everything: docker compose up

FROM python:3.11-slim AS build
# A compiler for the packages without a wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    RECSYS_HOME=/var/lib/recsys
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home --uid 10001 recsys \
    && mkdir -p /app/runs /var/lib/recsys \
    && chown recsys:recsys /app/runs /var/lib/recsys
WORKDIR /app
COPY recsys.toml /app/recsys.toml
USER recsys
EXPOSE 8000
CMD ["recsys", "serve", "--host", "0.0.0.0", "--port", "8000"]
