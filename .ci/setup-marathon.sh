# Sourced by .ci/run (bash, set -euo pipefail) after the workspace build.
# Makes a python venv with the unmodified Marathon client library (PyPI `marathon`, i.e.
# marathon-python, pinned) for cluster-core's compatibility test of the `/v2` API, cached in
# $DCFORM_CI_CACHE, and exports DCFORM_TEST_MARATHON_PYTHON (that venv's python).
_marathon_version="0.13.0"
_marathon_venv="${DCFORM_CI_CACHE:-/var/tmp/dcform-ci-cache}/marathon-$_marathon_version-venv"
if ! "$_marathon_venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('marathon') != '$_marathon_version')" >/dev/null 2>&1; then
  echo "   building $_marathon_venv"
  rm -rf "$_marathon_venv"
  python3 -m venv "$_marathon_venv"
  "$_marathon_venv/bin/pip" -q install "marathon==$_marathon_version"
  "$_marathon_venv/bin/python" -c 'import marathon'
fi
export DCFORM_TEST_MARATHON_PYTHON="$_marathon_venv/bin/python"
unset _marathon_venv _marathon_version
