# TEST HARNESS ONLY: a CPU stand-in for pytorch/pytorch:*-runtime (whose torch is CUDA's).
# The harness's local index serves the torch wheel and its dependencies over loopback.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
ARG TORCH_SPEC
ARG TORCH_INDEX_URL
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}" \
 && python -c "import torch; print(torch.__version__)"
