"""Node configuration: files, ``CALLFS_<SECTION>__<KEY>`` overrides, validation and masking."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from callfs.config import (
    AuthConfig,
    Config,
    ConfigError,
    env_overrides,
    is_loopback,
    load_config,
    split_host_port,
)

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
KEY_C = "key-c-0123456789abcdef"
PROXY_SECRET = "proxy-secret-0123456789"
LINK_SECRET = "link-secret-0123456789"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_yaml(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, "config.yaml", text), environ or {})


# --- files ------------------------------------------------------------------------------------------------


def test_yaml_file_is_loaded_into_typed_sections(tmp_path: Path) -> None:
    config = load_yaml(
        tmp_path,
        f"""
data_dir: /var/lib/callfs
server:
  listen_addr: "127.0.0.1:9000"
  read_timeout: 12.5
auth:
  api_keys: [{KEY_A}, {KEY_B}]
  user_groups: {{api-user-0: [staff]}}
dlm:
  type: redis
  redis_addr: "10.0.0.5:6380"
""",
    )
    assert config.data_dir == Path("/var/lib/callfs")
    assert config.server.listen_addr == "127.0.0.1:9000"
    assert config.server.read_timeout == 12.5
    assert config.auth.api_keys == [KEY_A, KEY_B]
    assert config.auth.user_groups == {"api-user-0": ["staff"]}
    assert config.dlm.type == "redis"
    assert config.dlm.redis_addr == "10.0.0.5:6380"
    assert config.metadata_store.type == "sqlite"  # untouched sections keep their defaults


def test_json_file_is_loaded(tmp_path: Path) -> None:
    path = write(tmp_path, "config.json", json.dumps({"auth": {"api_keys": [KEY_A]}, "log": {"format": "json"}}))
    config = load_config(path, {})
    assert config.auth.api_keys == [KEY_A]
    assert config.log.format == "json"


def test_empty_yaml_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_yaml(tmp_path, "")
    assert config == Config()
    assert config.server.listen_addr == "127.0.0.1:8443"
    assert config.sqlite_path() == Path("callfs-data/metadata.db")
    assert config.localfs_root() == Path("callfs-data/blobs")
    assert not config.uses_tls


def test_config_yaml_in_the_working_directory_is_used_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "config.yaml", "log: {level: debug}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}).log.level == "debug"


def test_without_any_file_the_defaults_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}) == Config()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml", {})


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path, "server: [unclosed\n")


def test_invalid_json_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(write(tmp_path, "c.json", "{'single': 'quotes'}"), {})


def test_file_that_is_not_a_mapping_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_yaml(tmp_path, "- a\n- b\n")


def test_unknown_keys_are_refused_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.listen_adress"):
        load_yaml(tmp_path, "server: {listen_adress: '127.0.0.1:1'}\n")


def test_wrong_types_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dlm\.redis_db"):
        load_yaml(tmp_path, "dlm: {redis_db: -1}\n")
    with pytest.raises(ConfigError, match=r"server\.read_timeout"):
        load_yaml(tmp_path, "server: {read_timeout: 0}\n")


# --- environment overrides --------------------------------------------------------------------------------


def test_env_overrides_win_over_the_file_and_merge_per_key(tmp_path: Path) -> None:
    config = load_yaml(
        tmp_path,
        "server: {listen_addr: '127.0.0.1:9000', read_timeout: 5}\n",
        {"CALLFS_SERVER__READ_TIMEOUT": "60", "CALLFS_LOG__LEVEL": "warning", "OTHER_VAR": "x"},
    )
    assert config.server.read_timeout == 60.0
    assert config.server.listen_addr == "127.0.0.1:9000"
    assert config.log.level == "warning"


def test_env_override_of_a_top_level_key(tmp_path: Path) -> None:
    assert load_yaml(tmp_path, "", {"CALLFS_DATA_DIR": "/srv/callfs"}).data_dir == Path("/srv/callfs")


def test_env_override_parses_yaml_flow_lists_and_maps(tmp_path: Path) -> None:
    config = load_yaml(
        tmp_path,
        "",
        {
            "CALLFS_AUTH__API_KEYS": f"[{KEY_A}, {KEY_B}]",
            "CALLFS_INSTANCE_DISCOVERY__PEER_ENDPOINTS": "{node-b: 'http://127.0.0.1:9001'}",
            "CALLFS_METRICS__ENABLED": "false",
        },
    )
    assert config.auth.api_keys == [KEY_A, KEY_B]
    assert config.instance_discovery.peer_endpoints == {"node-b": "http://127.0.0.1:9001"}
    assert config.metrics.enabled is False


def test_env_override_of_a_map_entry(tmp_path: Path) -> None:
    config = load_yaml(
        tmp_path, f"auth: {{api_key_users: {{bob: {KEY_B}}}}}\n", {"CALLFS_AUTH__API_KEY_USERS__ALICE": KEY_A}
    )
    assert config.auth.api_key_users == {"bob": KEY_B, "alice": KEY_A}


@pytest.mark.parametrize(
    ("variable", "section", "key"),
    [
        ("CALLFS_AUTH__INTERNAL_PROXY_SECRET", "auth", "internal_proxy_secret"),
        ("CALLFS_AUTH__SINGLE_USE_LINK_SECRET", "auth", "single_use_link_secret"),
        ("CALLFS_DLM__REDIS_PASSWORD", "dlm", "redis_password"),
        ("CALLFS_BACKEND__S3_SECRET_KEY", "backend", "s3_secret_key"),
        ("CALLFS_INSTANCE_DISCOVERY__INSTANCE_ID", "instance_discovery", "instance_id"),
    ],
)
@pytest.mark.parametrize("value", ["0012345678901234", "1234567890123456", "1e300000000000000", "0x1234567890abcdef"])
def test_numeric_looking_secrets_stay_strings(
    tmp_path: Path, variable: str, section: str, key: str, value: str
) -> None:
    config = load_yaml(tmp_path, "", {variable: value})
    assert getattr(getattr(config, section), key) == value


def test_boolean_looking_password_stays_a_string(tmp_path: Path) -> None:
    assert load_yaml(tmp_path, "", {"CALLFS_DLM__REDIS_PASSWORD": "yes"}).dlm.redis_password == "yes"


def test_env_value_that_is_not_yaml_is_taken_verbatim() -> None:
    assert env_overrides({"CALLFS_DLM__REDIS_PASSWORD": "*star: [x"}) == {"dlm": {"redis_password": "*star: [x"}}


def test_env_overrides_ignore_other_variables_and_empty_key_parts() -> None:
    assert env_overrides({"HOME": "/root", "CALLFS_": "x", "CALLFS___": "y", "CALLFSX": "z"}) == {}


def test_empty_env_value_is_an_empty_string() -> None:
    assert env_overrides({"CALLFS_SERVER__EXTERNAL_URL": ""}) == {"server": {"external_url": ""}}


def test_conflicting_env_overrides_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALLFS_SERVER__PROTOCOL"):
        load_yaml(tmp_path, "", {"CALLFS_SERVER": "x", "CALLFS_SERVER__PROTOCOL": "http"})


def test_numeric_looking_api_keys_in_an_env_list_stay_strings(tmp_path: Path) -> None:
    config = load_yaml(tmp_path, "", {"CALLFS_AUTH__API_KEYS": "[1234567890123456, 6543210987654321]"})
    assert config.auth.api_keys == ["1234567890123456", "6543210987654321"]


def test_numeric_looking_api_key_of_a_named_user_stays_a_string(tmp_path: Path) -> None:
    config = load_yaml(tmp_path, "", {"CALLFS_AUTH__API_KEY_USERS__ALICE": "1234567890123456"})
    assert config.auth.api_key_users == {"alice": "1234567890123456"}


@pytest.mark.parametrize("password", ["null", "~", "Null", "pass word #1"])
def test_password_is_taken_verbatim_from_the_environment(tmp_path: Path, password: str) -> None:
    assert load_yaml(tmp_path, "", {"CALLFS_DLM__REDIS_PASSWORD": password}).dlm.redis_password == password


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        {"api_keys": ["fifteen-chars-x"]},
        {"api_key_users": {"alice": "short"}},
    ],
)
def test_api_keys_shorter_than_16_characters_are_refused(tmp_path: Path, auth: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"auth: .*API keys must be at least 16 characters"):
        load_config(write(tmp_path, "c.json", json.dumps({"auth": auth})), {})


@pytest.mark.parametrize(
    "auth",
    [
        {"api_key_users": {"evil\r\nname": "k" * 16}},
        {"api_key_users": {"a b": "k" * 16}},
        {"user_groups": {"bob": ["staff\n"]}},
        {"user_groups": {"-x": ["staff"]}},
    ],
)
def test_user_and_group_names_must_be_valid(tmp_path: Path, auth: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"auth: .*invalid user or group name"):
        load_config(write(tmp_path, "c.json", json.dumps({"auth": auth})), {})


def test_api_key_of_exactly_16_characters_is_accepted(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "c.json", json.dumps({"auth": {"api_keys": ["x" * 16]}})), {})


@pytest.mark.parametrize("secret", ["internal_proxy_secret", "single_use_link_secret"])
def test_short_secrets_are_refused_naming_them(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ConfigError, match=f"auth: .*{secret} must be at least 16 characters"):
        load_yaml(tmp_path, f"auth: {{{secret}: fifteen-chars-x}}\n")


@pytest.mark.parametrize(
    "auth",
    [
        {"api_keys": [KEY_A, KEY_A]},
        {"api_keys": [KEY_A], "api_key_users": {"alice": KEY_A}},
        {"api_key_users": {"alice": KEY_A, "bob": KEY_A}},
    ],
)
def test_duplicate_api_keys_are_refused(tmp_path: Path, auth: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"auth: .*same API key appears twice"):
        load_config(write(tmp_path, "c.json", json.dumps({"auth": auth})), {})


@pytest.mark.parametrize(
    "auth",
    [
        {"api_keys": [KEY_A], "internal_proxy_secret": KEY_A},
        {"api_key_users": {"alice": KEY_A}, "internal_proxy_secret": KEY_A},
    ],
)
def test_internal_proxy_secret_equal_to_an_api_key_is_refused(tmp_path: Path, auth: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="internal_proxy_secret must not also be an API key"):
        load_config(write(tmp_path, "c.json", json.dumps({"auth": auth})), {})


@pytest.mark.parametrize("listen_addr", ["0.0.0.0:8443", ":8443", "192.168.1.10:80", "[::]:8443", "node.example:80"])
def test_plain_http_on_a_non_loopback_address_is_refused(tmp_path: Path, listen_addr: str) -> None:
    with pytest.raises(ConfigError, match=r"refusing to serve plain HTTP.*server\.protocol: http"):
        load_yaml(tmp_path, f"server: {{listen_addr: '{listen_addr}'}}\n")


@pytest.mark.parametrize("listen_addr", ["0.0.0.0:8443", "192.168.1.10:80"])
def test_explicit_protocol_http_allows_plain_http_anywhere(tmp_path: Path, listen_addr: str) -> None:
    config = load_yaml(tmp_path, f"server: {{listen_addr: '{listen_addr}', protocol: http}}\n")
    assert not config.uses_tls


@pytest.mark.parametrize("listen_addr", ["127.0.0.1:8443", "127.8.9.10:1", "localhost:80", "[::1]:8443"])
def test_plain_http_on_loopback_is_allowed_implicitly(tmp_path: Path, listen_addr: str) -> None:
    assert load_yaml(tmp_path, f"server: {{listen_addr: '{listen_addr}'}}\n").server.listen_addr == listen_addr


def test_tls_allows_any_address(tmp_path: Path) -> None:
    config = load_yaml(tmp_path, "server: {listen_addr: '0.0.0.0:8443', cert_file: /c.pem, key_file: /k.pem}\n")
    assert config.uses_tls


@pytest.mark.parametrize("server", ["{cert_file: /c.pem}", "{key_file: /k.pem}"])
def test_cert_without_key_or_key_without_cert_is_refused(tmp_path: Path, server: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.cert_file and server\.key_file must be given together"):
        load_yaml(tmp_path, f"server: {server}\n")


def test_https_without_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.protocol https needs"):
        load_yaml(tmp_path, "server: {protocol: https}\n")


def test_postgres_without_dsn_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"metadata_store\.dsn is required"):
        load_yaml(tmp_path, "metadata_store: {type: postgres}\n")
    config = load_yaml(tmp_path, "metadata_store: {type: postgres, dsn: 'postgresql://u@127.0.0.1/db'}\n")
    assert config.metadata_store.dsn == "postgresql://u@127.0.0.1/db"


@pytest.mark.parametrize("listen_addr", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", ""])
def test_malformed_listen_address_names_the_field(tmp_path: Path, listen_addr: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.listen_addr"):
        load_yaml(tmp_path, f"server: {{listen_addr: '{listen_addr}'}}\n")


@pytest.mark.parametrize(
    ("addr", "host", "port"),
    [
        ("127.0.0.1:80", "127.0.0.1", 80),
        ("[::1]:8443", "::1", 8443),
        (":9", "0.0.0.0", 9),
        ("h.example:65535", "h.example", 65535),
    ],
)
def test_split_host_port(addr: str, host: str, port: int) -> None:
    assert split_host_port(addr) == (host, port)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.0.1", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- users and masking ------------------------------------------------------------------------------------


def test_users_by_key_numbers_only_non_empty_keys() -> None:
    auth = AuthConfig(api_keys=["", KEY_A, "", KEY_B], api_key_users={"alice": KEY_C})
    assert auth.users_by_key() == {KEY_A: "api-user-0", KEY_B: "api-user-1", KEY_C: "alice"}


def test_users_by_key_is_empty_without_keys() -> None:
    assert AuthConfig(api_keys=["", ""]).users_by_key() == {}


def test_masked_hides_every_secret(tmp_path: Path) -> None:
    secrets = {
        "api_key": KEY_A,
        "user_key": KEY_B,
        "proxy": PROXY_SECRET,
        "link": LINK_SECRET,
        "s3": "s3-secret-value-xyz",
        "redis": "redis-password-xyz",
        "dsn": "postgresql://callfs:pg-password-xyz@127.0.0.1:5432/callfs",
    }
    config = load_config(
        write(
            tmp_path,
            "c.json",
            json.dumps(
                {
                    "auth": {
                        "api_keys": [secrets["api_key"]],
                        "api_key_users": {"alice": secrets["user_key"]},
                        "internal_proxy_secret": secrets["proxy"],
                        "single_use_link_secret": secrets["link"],
                    },
                    "backend": {"s3_secret_key": secrets["s3"], "s3_access_key": "AKIAEXAMPLE"},
                    "dlm": {"redis_password": secrets["redis"]},
                    "metadata_store": {"type": "postgres", "dsn": secrets["dsn"]},
                }
            ),
        ),
        {},
    )
    masked = config.masked()
    dumped = json.dumps(masked)
    for name, value in secrets.items():
        assert value not in dumped, name
    assert "pg-password-xyz" not in dumped
    assert masked["auth"]["api_keys"] == ["***"]
    assert masked["auth"]["api_key_users"] == {"alice": "***"}
    assert masked["auth"]["internal_proxy_secret"] == "***"
    assert masked["backend"]["s3_secret_key"] == "***"
    assert masked["metadata_store"]["dsn"] == "***"
    assert masked["dlm"]["redis_password"] == "***"
    # Non-secrets stay visible and the original config is untouched.
    assert masked["backend"]["s3_access_key"] == "AKIAEXAMPLE"
    assert masked["server"]["listen_addr"] == "127.0.0.1:8443"
    assert config.auth.api_keys == [secrets["api_key"]]


def test_masked_keeps_absent_secrets_null() -> None:
    masked = Config().masked()
    assert masked["auth"]["internal_proxy_secret"] is None
    assert masked["dlm"]["redis_password"] is None
    assert masked["metadata_store"]["dsn"] is None
    json.dumps(masked)


# --- s3 ----------------------------------------------------------------------------------------------------


def test_s3_listener_is_off_by_default(tmp_path: Path) -> None:
    config = load_yaml(tmp_path, "{}\n")
    assert config.s3.listen_addr == "" and config.auth.s3_credentials == {}


def test_s3_credentials_map_access_keys_to_users(tmp_path: Path) -> None:
    config = load_yaml(tmp_path, "s3: {listen_addr: '127.0.0.1:9000'}\n"
                                 "auth: {s3_credentials: {AKALICE1: {secret: s3-secret-0123456789, user: alice}}}\n")
    assert config.auth.s3_credentials["AKALICE1"].user == "alice"
    assert config.masked()["auth"]["s3_credentials"] == {"AKALICE1": {"secret": "***", "user": "alice"}}


@pytest.mark.parametrize(("credentials", "message"), [
    ("{AK/1: {secret: s3-secret-0123456789, user: alice}}", "invalid S3 access key id"),
    ("{AKALICE1: {secret: short, user: alice}}", "S3 secrets must be at least 16"),
    ("{AKALICE1: {secret: s3-secret-0123456789, user: -bad}}", "invalid user or group name"),
    ("{AKALICE1: {secret: s3-secret-0123456789}}", "user"),
])
def test_bad_s3_credentials_are_refused(tmp_path: Path, credentials: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_yaml(tmp_path, f"auth: {{s3_credentials: {credentials}}}\n")


def test_plain_http_s3_on_a_non_loopback_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="refusing to serve S3 over plain HTTP"):
        load_yaml(tmp_path, "s3: {listen_addr: '0.0.0.0:9000'}\n")
    config = load_yaml(tmp_path, "server: {listen_addr: '0.0.0.0:8443', protocol: http}\n"
                                 "s3: {listen_addr: '0.0.0.0:9000'}\n")
    assert config.s3.listen_addr == "0.0.0.0:9000"


# --- workers -----------------------------------------------------------------------------------------------


SHARED = {"metadata_store": {"type": "postgres", "dsn": "postgresql://u@127.0.0.1/db"}, "dlm": {"type": "redis"}}


@pytest.mark.parametrize("sections", [
    {},
    {"metadata_store": SHARED["metadata_store"]},
    {"dlm": SHARED["dlm"]},
], ids=["sqlite-local", "postgres-local", "sqlite-redis"])
def test_more_than_one_worker_without_postgres_and_redis_is_a_config_error(
    tmp_path: Path, sections: dict[str, object]
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**sections, "server": {"workers": 2}}))
    with pytest.raises(ConfigError, match=r"server\.workers 2 needs metadata_store\.type postgres and dlm\.type redis"):
        load_config(path, {})


def test_one_worker_by_default_on_sqlite_or_local_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}).workers == 1
    assert load_config(None, {"CALLFS_METADATA_STORE__TYPE": "postgres",
                              "CALLFS_METADATA_STORE__DSN": "postgresql://u@h/d"}).workers == 1


def test_one_worker_per_usable_cpu_by_default_on_postgres_and_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "shared.json"
    path.write_text(json.dumps(SHARED))
    assert load_config(path, {}).workers == len(os.sched_getaffinity(0))
    assert load_config(path, {"CALLFS_SERVER__WORKERS": "3"}).workers == 3
    with pytest.raises(ConfigError, match=r"server\.workers"):
        load_config(path, {"CALLFS_SERVER__WORKERS": "0"})
