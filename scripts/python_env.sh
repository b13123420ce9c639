# Sourced by scripts/quickstart.sh and scripts/test.sh: choose the Python interpreter and the
# environment jaxssl is installed into, then install it.
#
#   jaxssl_install EXTRAS     sets JAXSSL_PY (the python to run) and pip-installs -e ".[EXTRAS]"
#
# Interpreter: $PYTHON if set, else `python`, else `python3` (Debian and Ubuntu ship only
# python3). Environment: the active one if there is one (a virtualenv/venv: $VIRTUAL_ENV or
# sys.prefix != sys.base_prefix; conda: $CONDA_PREFIX); otherwise .venv in the checkout,
# created on first use and reused afterwards. A distribution's Python refuses `pip install`
# (PEP 668, "externally-managed-environment"), so that .venv is isolated from it; an
# interpreter that allows installs (pyenv, python.org) gets a .venv that also sees its
# packages (--system-site-packages), so nothing it already has is downloaded again.

jaxssl_pick_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    echo "$PYTHON"
  elif command -v python > /dev/null 2>&1; then
    echo python
  elif command -v python3 > /dev/null 2>&1; then
    echo python3
  else
    echo "error: no Python found: install Python 3.11 or 3.12 (e.g. apt install python3 python3-venv)" \
         "or set PYTHON=/path/to/python" >&2
    return 1
  fi
}

jaxssl_install() {
  local extras=$1 base root venv
  root=$(pwd)
  base=$(jaxssl_pick_python) || return 1
  if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2> /dev/null; then
    echo "error: $base is $("$base" --version 2>&1); jaxssl needs Python 3.11 or 3.12 (>= 3.10)." \
         "Set PYTHON=/path/to/python3.11" >&2
    return 1
  fi
  if [[ -n "${VIRTUAL_ENV:-}" || -n "${CONDA_PREFIX:-}" ]] \
      || "$base" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    JAXSSL_PY=$base
    echo "jaxssl: installing into the active environment $("$base" -c 'import sys; print(sys.prefix)')"
  else
    venv="$root/.venv"
    if [[ ! -x "$venv/bin/python" ]]; then
      local flags=()
      if [[ ! -f "$("$base" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]]; then
        flags=(--system-site-packages)  # reuse what this interpreter already has
      fi
      echo "jaxssl: $("$base" -c 'import sys; print(sys.executable)') is no virtual environment;" \
           "creating $venv ${flags[*]}"
      if ! "$base" -m venv "${flags[@]}" "$venv"; then
        rm -rf "$venv"
        echo "error: '$base -m venv' failed; on Debian/Ubuntu install the venv module first:" \
             "sudo apt install python3-venv (or python3.11-venv)" >&2
        return 1
      fi
    else
      echo "jaxssl: reusing $venv"
    fi
    JAXSSL_PY="$venv/bin/python"
  fi
  echo "jaxssl: pip install -e '.[$extras]' with $JAXSSL_PY (the first time this downloads JAX," \
       "Flax, TensorFlow, ...: several minutes)"
  "$JAXSSL_PY" -m pip install -q --disable-pip-version-check -e ".[$extras]"
  jaxssl_where
}

jaxssl_where() {  # where jaxssl is installed, and how to use that environment
  if [[ "$JAXSSL_PY" == "$(pwd)/.venv/bin/python" ]]; then
    echo "jaxssl: installed in $(pwd)/.venv; activate it with: source $(pwd)/.venv/bin/activate"
  else
    echo "jaxssl: installed in $("$JAXSSL_PY" -c 'import sys; print(sys.prefix)') ($JAXSSL_PY)"
  fi
}
