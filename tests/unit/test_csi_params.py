"""StorageClass parameters, cluster references and secrets (callfs_csi.params)."""

from __future__ import annotations

import pytest

from callfs_csi.errors import InvalidArgument
from callfs_csi.params import (
    Credentials,
    MutableParameters,
    OnDelete,
    VolumeParameters,
    cluster_service_url,
    credentials,
    parse_mutable_parameters,
    parse_parameters,
    validate_server_url,
)

DEFAULT = Credentials("http://127.0.0.1:8443", "default-key-0123456789")


def test_no_parameters_mean_the_default_cluster_and_delete() -> None:
    assert parse_parameters({}) == VolumeParameters(None, OnDelete.DELETE)


def test_server_parameter_is_a_url_without_trailing_slash() -> None:
    assert parse_parameters({"server": "https://callfs.example:8443/"}).server == "https://callfs.example:8443"


def test_cluster_parameter_resolves_to_the_client_service() -> None:
    assert parse_parameters({"cluster": "storage/main"}).server == "http://main.storage.svc:8443"


def test_a_cluster_reference_takes_the_endpoint_its_operator_advertises_in_the_secret() -> None:
    params = parse_parameters({"cluster": "storage/main"})
    advertised = {"api-key": "k" * 20, "serverURL": "https://main.storage.svc.cluster.local:8443", "ca.crt": "CA"}
    creds = credentials(advertised, params.server_for(advertised), None)
    assert (creds.server, creds.ca_bundle) == ("https://main.storage.svc.cluster.local:8443", "CA")
    # An older Secret without serverURL: the client Service by name, as before.
    assert params.server_for({"api-key": "k" * 20}) == "http://main.storage.svc:8443"
    # A server parameter is the admin's word: the secret's serverURL does not override it.
    assert parse_parameters({"server": "https://x:1"}).server_for(advertised) == "https://x:1"


@pytest.mark.parametrize("policy", ["delete", "retain", "archive"])
def test_on_delete_policies(policy: str) -> None:
    assert parse_parameters({"onDelete": policy}).on_delete is OnDelete(policy)


def test_kubernetes_prefixed_parameters_are_ignored() -> None:
    assert parse_parameters({"csi.storage.k8s.io/pvc/name": "x"}) == VolumeParameters()


@pytest.mark.parametrize(
    "parameters",
    [{"server": "ftp://x"}, {"server": "http://"}, {"server": "http://u:p@host"}, {"server": "http://h:99999"},
     {"cluster": "no-slash"}, {"cluster": "Bad/Name"}, {"cluster": "a/b/c"}, {"onDelete": "shred"},
     {"server": "http://a", "cluster": "n/c"}, {"sever": "http://typo"}],
)
def test_bad_parameters_are_invalid_arguments(parameters: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        parse_parameters(parameters)


def test_cluster_service_url_shape() -> None:
    assert cluster_service_url("ns-1/callfs") == "http://callfs.ns-1.svc:8443"


def test_validate_server_url_keeps_https_and_port() -> None:
    assert validate_server_url("https://h:1/") == "https://h:1"


def test_secret_key_wins_over_the_default_key() -> None:
    creds = credentials({"apiKey": "secret-key-0123456789"}, None, DEFAULT)
    assert creds == Credentials(DEFAULT.server, "secret-key-0123456789")


def test_the_operators_generated_secret_works_as_it_is() -> None:
    # <name>-api-key, made by the CallFSCluster operator, holds the root key under "api-key".
    assert credentials({"api-key": "root-key-0123456789"}, None, DEFAULT).api_key == "root-key-0123456789"
    both = {"apiKey": "csi-key-0123456789", "api-key": "root-key-0123456789"}
    assert credentials(both, None, DEFAULT).api_key == "csi-key-0123456789"


def test_default_key_serves_the_default_server_only() -> None:
    assert credentials({}, DEFAULT.server + "/", DEFAULT) == DEFAULT
    with pytest.raises(InvalidArgument, match="apiKey"):
        credentials({}, "http://other:8443", DEFAULT)


def test_secret_server_url_is_used_when_the_volume_names_none() -> None:
    creds = credentials({"apiKey": "k" * 20, "serverURL": "http://from-secret:8443"}, None, DEFAULT)
    assert creds.server == "http://from-secret:8443"


def test_volume_server_wins_over_the_secret_server() -> None:
    creds = credentials({"apiKey": "k" * 20, "serverURL": "http://from-secret:8443"}, "http://volume:1", None)
    assert creds.server == "http://volume:1"


def test_no_server_anywhere_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="no CallFS cluster"):
        credentials({"apiKey": "k" * 20}, None, None)


def test_max_inodes_parameter() -> None:
    assert parse_parameters({"maxInodes": "1000"}).max_inodes == 1000


@pytest.mark.parametrize("value", ["0", "-1", "1e3", "", "many"])
def test_bad_max_inodes_is_invalid(value: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_parameters({"maxInodes": value})


def test_mutable_parameters() -> None:
    parsed = parse_mutable_parameters({"onDelete": "archive", "maxInodes": "5"})
    assert parsed == MutableParameters(OnDelete.ARCHIVE, 5)
    assert parse_mutable_parameters({}) == MutableParameters()


@pytest.mark.parametrize("parameters", [{"XXX_FakeKey": "v"}, {"server": "http://a"}, {"onDelete": "shred"}])
def test_unsupported_mutable_parameters_are_invalid(parameters: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        parse_mutable_parameters(parameters)
