# One image for every Airflow role (api-server, scheduler, dag-processor, triggerer, worker).
FROM python:3.11-slim
ENV UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /opt/mobility
COPY pyproject.toml uv.lock README.md ./
COPY mobility ./mobility
COPY ingest ./ingest
RUN uv sync --frozen --no-dev
COPY . .
RUN uv sync --frozen --no-dev && python -c "from mobility.spatial import install_spatial; install_spatial()"
