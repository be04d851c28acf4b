# Sourced by .ci/run (bash, set -euo pipefail) after the workspace build.
# Makes a python venv with the unmodified pymesos framework library for cluster-core's
# integration test, cached in $DCFORM_CI_CACHE, and exports DCFORM_TEST_PYTHON.
# pymesos needs http-parser, whose shipped C file does not build on Python 3.11: its sdist is
# downloaded and the C file regenerated with Cython < 3 before installing.
_dccore_venv="${DCFORM_CI_CACHE:-/var/tmp/dcform-ci-cache}/pymesos-venv"
if ! "$_dccore_venv/bin/python" -c 'import pymesos, addict' >/dev/null 2>&1; then
  echo "   building $_dccore_venv"
  rm -rf "$_dccore_venv"
  python3 -m venv "$_dccore_venv"
  "$_dccore_venv/bin/pip" -q install "cython<3" setuptools wheel
  _dccore_tmp=$(mktemp -d)
  "$_dccore_venv/bin/pip" -q download --no-deps --no-binary :all: -d "$_dccore_tmp" "http-parser==0.9.0"
  tar -C "$_dccore_tmp" -xzf "$_dccore_tmp"/http-parser-*.tar.gz
  (
    cd "$_dccore_tmp"/http-parser-*/
    # Cython's warnings are noise here; its output is shown only if it fails.
    "$_dccore_venv/bin/cython" -3 http_parser/parser.pyx -o http_parser/parser.c >cython.log 2>&1 || { cat cython.log; false; }
    "$_dccore_venv/bin/pip" -q install --no-build-isolation .
  )
  "$_dccore_venv/bin/pip" -q install "pymesos==0.3.15"
  rm -rf "$_dccore_tmp"
  "$_dccore_venv/bin/python" -c 'import pymesos, addict'
fi
export DCFORM_TEST_PYTHON="$_dccore_venv/bin/python"
unset _dccore_venv _dccore_tmp
