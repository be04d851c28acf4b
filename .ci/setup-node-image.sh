# Sourced by .ci/run after the workspace build: builds (or reuses, by recipe hash) the dcform node image that
# the real-sshd and docker-provider tests run containers from, with the product's own command. Needs Docker
# Engine and mmdebstrap (installed by .ci/run); without mmdebstrap it falls back to `docker build`.
echo "== node image"
if ! docker version >/dev/null 2>&1; then
  if [ "${CI:-false}" = true ]; then echo "Docker Engine is not usable: cannot build the node image" >&2; exit 1; fi
  echo "Docker not available: skipping the node image (real-sshd and docker tests will skip)"
else
  "$DCFORM_BIN" node-image build --if-missing
fi
