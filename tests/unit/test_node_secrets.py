"""Node secrets generated once into ``<data_dir>/secrets.json``, and the Redis URL of the ``dlm`` section."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from callfs.config import AuthConfig, Config, DLMConfig, InstanceDiscoveryConfig
from callfs.node import SECRETS_FILE, load_or_generate_secrets, redis_url

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
PROXY_SECRET = "proxy-secret-0123456789"
LINK_SECRET = "link-secret-0123456789"


def config_in(data_dir: Path, **sections: object) -> Config:
    return Config.model_validate({"data_dir": data_dir, **sections})


def test_secrets_are_generated_into_a_0600_file_in_a_new_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    node_secrets = load_or_generate_secrets(config_in(data_dir))
    path = data_dir / SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored == {
        "api_key": node_secrets.generated_api_key,
        "internal_proxy_secret": node_secrets.internal_proxy_secret,
        "single_use_link_secret": node_secrets.link_secret,
        "instance_id": node_secrets.instance_id,
    }
    assert not (data_dir / "secrets.tmp").exists()


def test_generated_secrets_are_long_and_distinct(tmp_path: Path) -> None:
    node_secrets = load_or_generate_secrets(config_in(tmp_path))
    assert node_secrets.generated_api_key is not None
    values = [node_secrets.generated_api_key, node_secrets.internal_proxy_secret, node_secrets.link_secret]
    assert all(len(value) >= 32 for value in values)
    assert len(set(values)) == 3
    assert node_secrets.instance_id.startswith("node-")
    assert len(node_secrets.instance_id) == len("node-") + 8


def test_without_configured_keys_the_generated_key_is_api_user_0(tmp_path: Path) -> None:
    node_secrets = load_or_generate_secrets(config_in(tmp_path))
    assert node_secrets.users_by_key == {node_secrets.generated_api_key: "api-user-0"}


def test_secrets_are_stable_across_calls_and_the_file_is_not_rewritten(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    first = load_or_generate_secrets(config)
    path = tmp_path / SECRETS_FILE
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    second = load_or_generate_secrets(config)
    assert second == first
    assert path.stat().st_mtime_ns == 1_000_000_000


def test_secrets_differ_between_data_dirs(tmp_path: Path) -> None:
    one = load_or_generate_secrets(config_in(tmp_path / "one"))
    two = load_or_generate_secrets(config_in(tmp_path / "two"))
    assert one.internal_proxy_secret != two.internal_proxy_secret
    assert one.link_secret != two.link_secret
    assert one.generated_api_key != two.generated_api_key


def test_configured_values_win_and_nothing_is_generated_for_them(tmp_path: Path) -> None:
    config = config_in(
        tmp_path,
        auth=AuthConfig(api_keys=[KEY_A], api_key_users={"alice": KEY_B}, internal_proxy_secret=PROXY_SECRET,
                        single_use_link_secret=LINK_SECRET),
        instance_discovery=InstanceDiscoveryConfig(instance_id="node-configured"),
    )
    node_secrets = load_or_generate_secrets(config)
    assert node_secrets.users_by_key == {KEY_A: "api-user-0", KEY_B: "alice"}
    assert node_secrets.generated_api_key is None
    assert node_secrets.internal_proxy_secret == PROXY_SECRET
    assert node_secrets.link_secret == LINK_SECRET
    assert node_secrets.instance_id == "node-configured"
    assert not (tmp_path / SECRETS_FILE).exists()


def test_configured_values_win_over_previously_generated_ones(tmp_path: Path) -> None:
    generated = load_or_generate_secrets(config_in(tmp_path))
    configured = load_or_generate_secrets(
        config_in(tmp_path, auth=AuthConfig(api_keys=[KEY_A], internal_proxy_secret=PROXY_SECRET))
    )
    assert configured.internal_proxy_secret == PROXY_SECRET
    assert configured.users_by_key == {KEY_A: "api-user-0"}
    assert configured.generated_api_key is None
    # What the config does not set still comes from the file.
    assert configured.link_secret == generated.link_secret
    assert configured.instance_id == generated.instance_id


def test_missing_entries_are_added_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / SECRETS_FILE
    path.write_text(json.dumps({"internal_proxy_secret": PROXY_SECRET}))
    path.chmod(0o600)
    node_secrets = load_or_generate_secrets(config_in(tmp_path))
    assert node_secrets.internal_proxy_secret == PROXY_SECRET
    stored = json.loads(path.read_text())
    assert stored["internal_proxy_secret"] == PROXY_SECRET
    assert stored["single_use_link_secret"] == node_secrets.link_secret
    assert stored["instance_id"] == node_secrets.instance_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- redis_url --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dlm", "url"),
    [
        (DLMConfig(), "redis://127.0.0.1:6379/0"),
        (DLMConfig(redis_addr="10.0.0.5:6380", redis_db=3), "redis://10.0.0.5:6380/3"),
        (DLMConfig(redis_addr="redis.example:6379"), "redis://redis.example:6379/0"),
        (DLMConfig(redis_addr="[::1]:6379"), "redis://[::1]:6379/0"),
        (DLMConfig(redis_password="s3cret"), "redis://:s3cret@127.0.0.1:6379/0"),
        (DLMConfig(redis_password="p@ss/w:rd %#?"), "redis://:p%40ss%2Fw%3Ard%20%25%23%3F@127.0.0.1:6379/0"),
        (DLMConfig(redis_password=""), "redis://127.0.0.1:6379/0"),
    ],
)
def test_redis_url(dlm: DLMConfig, url: str) -> None:
    assert redis_url(Config(dlm=dlm)) == url


def test_redis_url_without_port_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="host:port"):
        redis_url(Config(dlm=DLMConfig(redis_addr="redis.example")))
