#!/usr/bin/env bash
# Venv helpers shared by scripts/setup and scripts/interop (source this file), and a
# command that makes the venvs of one ESPHome Device Builder release:
#
#   bash scripts/venv.sh builder [VERSION [ESPHOME]]  # .venv-builder[-VERSION[-esphome-ESPHOME]]
#   bash scripts/venv.sh standin BUILDER_VENV [STANDIN_VENV]
#
# `builder` installs `esphome-device-builder[esphome]==VERSION` (network; ~20 s and
# ~330 MB cold, < 1 s when the venv's stamp matches), with `esphome==ESPHOME` when given
# (else the newest ESPHome the release allows); without VERSION it installs
# requirements_builder.txt into .venv-builder, as scripts/setup does.  The stand-in venv
# is named like the builder venv with -standin for -builder.  `standin` needs no network:
# it (re)writes the stand-in compiler venv that runs on the given builder venv.
# Venvs are made with the interpreter .venv is based on unless ERB_BUILDER_PYTHON names one.
set -euo pipefail

ERB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"

if ! declare -F log >/dev/null; then
  log() { printf '[venv] %s\n' "$*" >&2; }
fi

make_venv_bare() {  # $1 interpreter, $2 venv dir; a venv without pip, kept when its base matches
  local py="$1" dir="$2"
  if [ -x "$dir/bin/python" ] && [ "$("$dir/bin/python" -c 'import sys; print(sys.base_prefix)')" = "$("$py" -c 'import sys; print(sys.base_prefix)')" ]; then
    return 0
  fi
  rm -rf "$dir"
  "$py" -m venv --without-pip "$dir"
}

make_venv() {  # $1 interpreter, $2 venv dir; with pip and uv
  local py="$1" dir="$2"
  make_venv_bare "$py" "$dir"
  [ -x "$dir/bin/pip" ] && return 0
  local wheel
  wheel="$(ls "$("$py" -c 'import sys; print(sys.base_prefix)')"/share/python-wheels/pip-*.whl 2>/dev/null | head -n 1 || true)"
  if [ -n "$wheel" ]; then
    "$dir/bin/python" "$wheel/pip" install -q "$wheel" >/dev/null
  else
    "$dir/bin/python" -m ensurepip --upgrade >/dev/null
  fi
  "$dir/bin/python" -m pip install -q --upgrade pip uv >/dev/null
}

write_if_changed() {  # $1 file, $2 content (one line)
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
    printf '%s\n' "$2" > "$1"
  fi
}

install_reqs() {  # $1 venv, $2 requirements file(s)...; stamped by content
  local dir="$1"; shift
  local key; key="$(cat "$@" | sha256sum | cut -c1-16)"
  local stamp="$dir/${REQ_STAMP:-.req-stamp}"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then return 0; fi
  local args=(); local f; for f in "$@"; do args+=(-r "$f"); done
  log "installing ${*} into ${dir##*/}"
  "$dir/bin/python" -m uv pip install -q --python "$dir/bin/python" "${args[@]}"
  echo "$key" > "$stamp"
}

builder_python() {  # the interpreter builder venvs are made with
  if [ -n "${ERB_BUILDER_PYTHON:-}" ]; then
    echo "$ERB_BUILDER_PYTHON"
  elif [ -x "$ERB_ROOT/.venv/bin/python" ]; then
    "$ERB_ROOT/.venv/bin/python" -c 'import sys; print(sys._base_executable)'
  else
    log "no .venv: run scripts/setup first (or set ERB_BUILDER_PYTHON)"; return 1
  fi
}

standin_venv_for() {  # $1 builder venv; the stand-in venv that belongs to it
  local dir="${1%/}" name
  name="${dir##*/}"
  case "$name" in
    .venv-builder*) echo "${dir%/*}/.venv-standin${name#.venv-builder}" ;;
    *) echo "$dir-standin" ;;
  esac
}

# A stand-in compiler venv: sees the builder's packages (builder.pth), can import
# tests/standin/esphome_standin.py (standin.pth), and its bin/esphome is our wrapper: the
# Device Builder runs the `esphome` next to its interpreter.  The .pth files hold this
# clone's paths, so they are rewritten whenever they differ (a clone in another folder).
setup_standin_venv() {  # $1 builder venv, $2 stand-in venv
  local bvenv="$1" svenv="$2" bpy site_b site_s
  bpy="$("$bvenv/bin/python" -c 'import sys; print(sys._base_executable)')"
  make_venv_bare "$bpy" "$svenv"
  site_b="$("$bvenv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  site_s="$("$svenv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  write_if_changed "$site_s/builder.pth" "$site_b"
  write_if_changed "$site_s/standin.pth" "$ERB_ROOT/tests/standin"
  if ! cmp -s "$ERB_ROOT/tests/standin/esphome" "$svenv/bin/esphome"; then
    install -m 0755 "$ERB_ROOT/tests/standin/esphome" "$svenv/bin/esphome"
  fi
}

builder_venv_for() {  # [$1 version [$2 esphome version]]; the builder venv's path
  if [ -z "${1:-}" ]; then
    echo "$ERB_ROOT/.venv-builder"
  elif [ -z "${2:-}" ]; then
    echo "$ERB_ROOT/.venv-builder-$1"
  else
    echo "$ERB_ROOT/.venv-builder-$1-esphome-$2"
  fi
}

# The Device Builder in its own venv (its pins clash with Home Assistant's), plus its
# stand-in venv.  Without a version: requirements_builder.txt into .venv-builder.  With
# an ESPHome version too, that ESPHome instead of the newest one the release allows.
setup_builder_venvs() {  # $1 interpreter, [$2 version, [$3 esphome]]; prints the builder venv
  local py="$1" version="${2:-}" esphome="${3:-}" bvenv reqs
  bvenv="$(builder_venv_for "$version" "$esphome")"
  if [ -z "$version" ]; then
    reqs="$ERB_ROOT/requirements_builder.txt"
  else
    reqs="$bvenv/requirements_builder.txt"
  fi
  make_venv "$py" "$bvenv"
  if [ -n "$version" ]; then
    local spec="esphome-device-builder[esphome]==$version"
    [ -z "$esphome" ] || spec+=$'\n'"esphome==$esphome"
    write_if_changed "$reqs" "$spec"
  fi
  install_reqs "$bvenv" "$reqs"
  setup_standin_venv "$bvenv" "$(standin_venv_for "$bvenv")"
  echo "$bvenv"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    builder)
      setup_builder_venvs "$(builder_python)" "${2:-}" "${3:-}" ;;
    standin)
      [ -n "${2:-}" ] || { log "usage: $0 standin BUILDER_VENV [STANDIN_VENV]"; exit 2; }
      setup_standin_venv "$2" "${3:-$(standin_venv_for "$2")}" ;;
    *)
      log "usage: $0 builder [VERSION [ESPHOME]] | standin BUILDER_VENV [STANDIN_VENV]"; exit 2 ;;
  esac
fi
