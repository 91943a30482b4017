FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
COPY topics ./topics
RUN pip install --no-cache-dir .
ENV WEB_HOST=0.0.0.0 \
    DATA_DIR=/var/lib/pending-points
VOLUME ["/var/lib/pending-points"]
EXPOSE 6066
CMD ["python", "-m", "app", "worker", "-l", "info"]
