"""A container's environment as the kubelet resolves it, from the pod spec and the Secrets/ConfigMaps.

Kubernetes rules (https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/):
``value`` may reference earlier variables as ``$(NAME)`` (``$$`` escapes a ``$``; an unknown reference stays
as written); ``valueFrom.fieldRef`` takes a pod field; ``secretKeyRef``/``configMapKeyRef`` take a key, and a
missing key is an error unless ``optional: true`` (then the variable is left out).

The operator uses it to check that the node configuration it generates loads (``callfs.config.load_config``)
before any pod runs it; kwok test clusters run no containers, so this is also how tests prove the config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class EnvError(ValueError):
    """A referenced Secret, ConfigMap or key does not exist (and the reference is not optional)."""


def expand(value: str, defined: Mapping[str, str]) -> str:
    """``value`` with ``$(NAME)`` replaced by ``defined[NAME]``, ``$$`` by ``$``; unknown names kept."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return defined[name] if name in defined else match.group(0)

    return _REF.sub(sub, value)


def resolve(
    container: Mapping[str, Any],
    pod_fields: Mapping[str, str],
    secrets: Mapping[str, Mapping[str, str]],
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """The environment of ``container`` (a pod-spec container dict).

    ``pod_fields`` maps ``fieldRef`` paths (``metadata.name``…) to values; ``secrets`` and ``config_maps`` map
    object names to their plain (decoded) data.

    Raises:
        EnvError: a required Secret/ConfigMap/key/field is missing; the message names the variable.
    """
    config_maps = config_maps or {}
    env: dict[str, str] = {}
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = expand(str(var["value"]), env)
            continue
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path not in pod_fields:
                raise EnvError(f"env {name}: pod field {path} is not known")
            env[name] = pod_fields[path]
            continue
        for kind, store in (("secretKeyRef", secrets), ("configMapKeyRef", config_maps)):
            if kind in source:
                ref = source[kind]
                data = store.get(ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    what = "Secret" if kind == "secretKeyRef" else "ConfigMap"
                    raise EnvError(f"env {name}: {what} {ref['name']} has no key {ref['key']!r}")
                env[name] = data[ref["key"]]
                break
        else:
            raise EnvError(f"env {name}: unsupported source {sorted(source)}")
    return env
