# The server image: `telematics serve` against an external PostgreSQL ≥ 14.
#   docker build -t telematics .
#   docker run -p 8080:8080 -e TELEMATICS_DATABASE_URL=postgresql://user:pw@db/telematics telematics
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TELEMATICS_HOST=0.0.0.0 TELEMATICS_PORT=8080 TELEMATICS_WORKERS=2

RUN useradd --create-home --uid 10001 telematics
WORKDIR /app
COPY pyproject.toml README.md ./
COPY telematics ./telematics
COPY ml ./ml
COPY sql ./sql
# Editable install keeps sql/ where the migration runner looks for it.
RUN pip install --no-cache-dir -e . && chown -R telematics /app
USER telematics

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"TELEMATICS_PORT\"]}/healthz')"
CMD ["telematics", "serve"]
