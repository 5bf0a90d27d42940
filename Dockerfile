# The console image: `docker build -t gooseui .` then run it in the cluster (endpoint mode
# `service`) with MONGO_URI set; the embedded database is not part of this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GOOSEUI_HOST=0.0.0.0 GOOSEUI_PORT=8080 GOOSEUI_DATA_DIR=/tmp/gooseui \
    GOOSEUI_LOG_FORMAT=json

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock --no-deps \
    && pip uninstall -y secantusdb
COPY gooseui ./gooseui
COPY k8s_manifests ./k8s_manifests
COPY main.py ./
RUN pip install --no-cache-dir --no-deps .

USER 1000:1000
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)" || exit 1
ENTRYPOINT ["gooseui"]
