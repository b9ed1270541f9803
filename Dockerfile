# lm-saes server image: the JSON API and the web UI (`lm-saes serve`), CPU torch for live inference.
# Built by docker-compose.yml (`docker compose up -d`); the UI is built here, so the image needs no node.
FROM node:20-slim AS ui
WORKDIR /src
COPY ui/package.json ui/package-lock.json ui/
RUN npm --prefix ui ci --no-audit --no-fund
COPY ui ui
RUN npm --prefix ui run build

FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /opt/lm-saes
COPY pyproject.toml README.md ./
COPY lm_saes lm_saes
COPY --from=ui /src/lm_saes/server/static lm_saes/server/static
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch>=2.4" \
    && pip install --no-cache-dir .
EXPOSE 8000
CMD ["lm-saes", "serve", "--host", "0.0.0.0", "--port", "8000"]
