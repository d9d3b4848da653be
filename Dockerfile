# The casework worker and API as a container image (the command picks which).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CASEWORK_PROGRAMS_DIR=/app/programs CASEWORK_DIRECTORY_DIR=/app/directory \
    CASEWORK_API_KEYS_FILE=/app/directory/api_keys.toml CASEWORK_VAR_DIR=/app/var
WORKDIR /app

COPY pyproject.toml README.md worker.py ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY store ./store
COPY config ./config
COPY service ./service
COPY api ./api
COPY cli ./cli
COPY devstack ./devstack
COPY programs ./programs
COPY directory ./directory
RUN pip install --no-cache-dir . && useradd --create-home casework && mkdir -p var && chown casework var
USER casework

CMD ["casework", "worker"]
