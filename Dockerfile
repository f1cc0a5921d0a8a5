# Multi-stage build: wheels in a builder, a slim non-root runtime with a health check.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dialer ./dialer
COPY pacing ./pacing
COPY agents_ws ./agents_ws
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# The desktop's softphone library, from npm with the lockfile (served by the dialer).
FROM debian:trixie-slim AS js
RUN apt-get update && apt-get install -y --no-install-recommends npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 dialer
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
WORKDIR /app
COPY migrations ./migrations
COPY --from=js /src/node_modules/sip.js/lib ./vendor/sip.js
ENV DIALER_MIGRATIONS_DIR=/app/migrations \
    DIALER_SIPJS_DIR=/app/vendor/sip.js \
    DIALER_HTTP_HOST=0.0.0.0 \
    DIALER_HTTP_PORT=8080 \
    DIALER_LOG_FORMAT=json
USER dialer
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
CMD ["sh", "-c", "dialer migrate && dialer serve"]
