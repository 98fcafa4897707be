# Build: uv resolves the locked dependencies into a virtualenv; the runtime image gets only that virtualenv and
# the project, runs as an unprivileged user and checks its own health.
FROM python:3.11-slim AS build
ENV UV_NO_PROGRESS=1 UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv
WORKDIR /app
# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY indexer indexer
COPY appview appview
COPY lexicons lexicons
COPY migrations migrations
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PATH=/app/.venv/bin:$PATH \
    PLYR_APPVIEW_HOST=0.0.0.0 PLYR_APPVIEW_PORT=8080 PLYR_APPVIEW_DATA_DIR=/data
RUN useradd --system --uid 10001 --home-dir /data --create-home plyr
COPY --from=build /app/.venv /app/.venv
USER plyr
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/xrpc/_health', timeout=3)"]
ENTRYPOINT ["plyr-appview"]
CMD ["up"]
