"""Resolving a container's environment by the kubelet's rules."""

from __future__ import annotations

import pytest

from callfs_operator.container_env import EnvError, expand, resolve


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)", "1"),
        ("x-$(A)-$(B)", "x-1-two"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("$A", "$A"),
        ("$$", "$"),
        ("", ""),
    ],
)
def test_expand(value: str, expected: str) -> None:
    assert expand(value, {"A": "1", "B": "two"}) == expected


def test_references_see_only_earlier_variables() -> None:
    container = {"env": [{"name": "A", "value": "$(B)"}, {"name": "B", "value": "b"}, {"name": "C", "value": "$(B)"}]}
    assert resolve(container, {}, {}) == {"A": "$(B)", "B": "b", "C": "b"}


def test_field_secret_and_configmap_sources() -> None:
    container = {"env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}},
    ]}
    assert resolve(container, {"metadata.name": "p-0"}, {"s": {"k": "sv"}}, {"m": {"k": "mv"}}) == {
        "POD": "p-0", "S": "sv", "M": "mv"}


def test_optional_missing_key_is_left_out() -> None:
    container = {"env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}}]}
    assert resolve(container, {}, {}) == {}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"secretKeyRef": {"name": "s", "key": "nope"}}, "env X: Secret s has no key 'nope'"),
        ({"secretKeyRef": {"name": "absent", "key": "k"}}, "env X: Secret absent has no key 'k'"),
        ({"configMapKeyRef": {"name": "m", "key": "k"}}, "env X: ConfigMap m has no key 'k'"),
        ({"fieldRef": {"fieldPath": "status.podIP"}}, "env X: pod field status.podIP is not known"),
        ({"resourceFieldRef": {"resource": "limits.cpu"}}, "env X: unsupported source"),
    ],
)
def test_missing_sources_are_errors(source: dict[str, object], message: str) -> None:
    with pytest.raises(EnvError, match=message.replace("(", r"\(")):
        resolve({"env": [{"name": "X", "valueFrom": source}]}, {}, {"s": {"k": "v"}})
