"""The Helm chart rendered by the ``helm`` that ``hack/tools.sh`` builds, for tests that need no cluster.

:func:`render` is ``helm template`` of ``charts/callfs`` with values given as ``--set`` pairs; :func:`render_error`
is what helm says when the values are refused (``values.schema.json`` or a ``fail`` in a template). When helm is
not built the test is skipped, or fails under ``CI=true`` (:func:`support.machine.unavailable`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from support.kube import bin_dir
from support.machine import unavailable

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "callfs"
RELEASE = "callfs"
NAMESPACE = "callfs-system"


@cache
def _helm() -> Path:
    helm = bin_dir() / "helm"
    if not helm.exists():
        unavailable(f"{helm} is not built (bash hack/tools.sh install helm)")
    return helm


def _run(values: Mapping[str, str], release: str, namespace: str,
         extra: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    args = [str(_helm()), "template", release, str(CHART), "--namespace", namespace, *extra]
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def render(values: Mapping[str, str] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE,
           extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The chart's objects for ``values`` (``--set key=value``; helm parses the values' types), release
    ``release`` in ``namespace``, test hooks included. Raises ``AssertionError`` with helm's message when helm
    refuses the values."""
    proc = _run(values or {}, release, namespace, extra)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_error(values: Mapping[str, str], **kwargs: Any) -> str:
    """helm's error message for ``values`` that must be refused. Raises ``AssertionError`` when helm renders
    them."""
    proc = _run(values, kwargs.get("release", RELEASE), kwargs.get("namespace", NAMESPACE), ())
    assert proc.returncode != 0, f"helm rendered {dict(values)}"
    return proc.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """The objects of ``kind`` (named ``name`` when given) among ``docs``."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
