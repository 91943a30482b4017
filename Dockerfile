FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
COPY topics ./topics
RUN pip install --no-cache-dir .
ENV WEB_HOST=0.0.0.0 \
    WEB_PORT=6066 \
    DATA_DIR=/var/lib/pending-points
VOLUME ["/var/lib/pending-points"]
EXPOSE 6066
# /health: the process serves HTTP. (Readiness, for load balancers: GET /ready.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('WEB_PORT', '6066'), timeout=2)"
# LOG_LEVEL and LOG_FORMAT come from the environment.
CMD ["python", "-m", "app", "worker"]
