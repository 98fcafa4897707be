FROM python:3.11-slim
ENV UV_NO_PROGRESS=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY indexer indexer
COPY appview appview
COPY lexicons lexicons
COPY migrations migrations
RUN uv sync --frozen --no-dev
ENTRYPOINT ["uv", "run", "--no-dev", "plyr-appview"]
CMD ["up", "--host", "0.0.0.0"]
