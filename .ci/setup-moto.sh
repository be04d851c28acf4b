# Sourced by .ci/run (bash, set -euo pipefail) after the workspace build.
# Makes a python venv with moto's EC2 server (PyPI `moto[server]`, pinned) for the aws provider's tests and
# benchmark, cached in $DCFORM_CI_CACHE, and exports DCFORM_TEST_MOTO (the `moto_server` executable).
# The tests start their own server on 127.0.0.1 with a free port; nothing is left running here.
_moto_version="5.2.5"
_moto_venv="${DCFORM_CI_CACHE:-/var/tmp/dcform-ci-cache}/moto-$_moto_version-venv"
if ! "$_moto_venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$_moto_version')" >/dev/null 2>&1 \
  || ! [ -x "$_moto_venv/bin/moto_server" ]; then
  echo "   building $_moto_venv"
  rm -rf "$_moto_venv"
  python3 -m venv "$_moto_venv"
  "$_moto_venv/bin/pip" -q install "moto[server]==$_moto_version"
  "$_moto_venv/bin/python" -c 'import moto.server'
fi
export DCFORM_TEST_MOTO="$_moto_venv/bin/moto_server"
unset _moto_venv _moto_version
