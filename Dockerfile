# The casework worker (and, later, the API) as a container image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CASEWORK_PROGRAMS_DIR=/app/programs CASEWORK_VAR_DIR=/app/var
WORKDIR /app

COPY pyproject.toml README.md worker.py ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY store ./store
COPY ops ./ops
COPY programs ./programs
RUN pip install --no-cache-dir . && useradd --create-home casework && mkdir -p var && chown casework var
USER casework

CMD ["casework", "worker"]
