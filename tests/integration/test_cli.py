"""The file subcommands of the ``callfs`` CLI against a real storage node (``support.app_node``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import click
import pytest
from click.testing import CliRunner, Result

from callfs.cli.files import EXIT_CODES_HELP, FILE_COMMANDS, ExitCode
from callfs.engine import SYSTEM_DIRECTORIES
from support.app_node import AppNode
from support.ports import free_port

MiB = 1024 * 1024

cli = click.Group("callfs", commands=FILE_COMMANDS, help="CallFS files.\n\n" + EXIT_CODES_HELP)


class Shell:
    """Runs ``callfs <args>`` in-process against one node, with the key from the environment."""

    def __init__(self, url: str, api_key: str) -> None:
        self.env = {"CALLFS_URL": url, "CALLFS_API_KEY": api_key}

    def __call__(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, env={**self.env, **(env or {})}, catch_exceptions=False)


@pytest.fixture
def callfs(app_node: AppNode) -> Shell:
    return Shell(app_node.url, app_node.api_key)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cp_up_and_down_keeps_the_sha256(callfs: Shell, tmp_path: Path) -> None:
    local = tmp_path / "data.bin"
    local.write_bytes(os.urandom(5 * MiB + 123))

    up = callfs("cp", "--progress", str(local), "callfs:/backup/")
    assert up.exit_code == 0, up.output
    down = callfs("cp", ":/backup/data.bin", str(tmp_path / "copy.bin"))
    assert down.exit_code == 0, down.output
    assert _sha256(tmp_path / "copy.bin") == _sha256(local)

    into_dir = tmp_path / "into"
    into_dir.mkdir()
    assert callfs("cp", ":/backup/data.bin", str(into_dir)).exit_code == 0
    assert _sha256(into_dir / "data.bin") == _sha256(local)


def test_cp_remote_to_remote_and_to_stdout(callfs: Shell, tmp_path: Path) -> None:
    local = tmp_path / "note.txt"
    local.write_bytes(b"remote copy\n" * 1000)
    assert callfs("cp", str(local), ":/a/note.txt").exit_code == 0
    assert callfs("cp", ":/a/note.txt", "callfs:/b/").exit_code == 0
    out = callfs("cp", ":/b/note.txt", "-")
    assert out.exit_code == 0
    assert out.stdout_bytes == local.read_bytes()


def test_cp_websocket_up_down_remote_and_stdio(callfs: Shell, tmp_path: Path) -> None:
    local = tmp_path / "ws.bin"
    local.write_bytes(os.urandom(3 * MiB + 5))
    up = callfs("cp", "--websocket", "--progress", str(local), ":/wsc/")
    assert up.exit_code == 0, up.output
    down = callfs("cp", "--websocket", ":/wsc/ws.bin", str(tmp_path / "back.bin"))
    assert down.exit_code == 0, down.output
    assert _sha256(tmp_path / "back.bin") == _sha256(local)
    assert callfs("cp", "--websocket", ":/wsc/ws.bin", ":/wsc/copy.bin").exit_code == 0
    assert callfs("cp", ":/wsc/copy.bin", "-").stdout_bytes == local.read_bytes()
    assert callfs("cp", "--websocket", "-", ":/wsc/in.txt", input=b"piped").exit_code == 0
    assert callfs("cp", "--websocket", ":/wsc/in.txt", "-").stdout_bytes == b"piped"
    refused = callfs("cp", "--websocket", "-n", str(local), ":/wsc/ws.bin")
    assert refused.exit_code == 5 and "FILE_ALREADY_EXISTS" in refused.stderr
    assert callfs("cp", "--websocket", ":/wsc/nothing", str(tmp_path / "x")).exit_code == 3


def test_cp_from_stdin(callfs: Shell) -> None:
    assert callfs("cp", "-", ":/in.txt", input=b"from stdin").exit_code == 0
    assert callfs("cp", ":/in.txt", "-").stdout_bytes == b"from stdin"


def test_cp_no_clobber_onto_an_existing_file_exits_5(callfs: Shell, tmp_path: Path) -> None:
    local = tmp_path / "f.txt"
    local.write_text("x")
    assert callfs("cp", str(local), ":/f.txt").exit_code == 0
    result = callfs("cp", "-n", str(local), ":/f.txt")
    assert result.exit_code == 5
    assert "FILE_ALREADY_EXISTS" in result.stderr
    assert callfs("cp", "-n", ":/f.txt", str(local)).exit_code == 5


def test_cp_between_two_local_paths_is_a_usage_error(callfs: Shell, tmp_path: Path) -> None:
    assert callfs("cp", str(tmp_path / "a"), str(tmp_path / "b")).exit_code == 2


def test_cp_of_a_missing_file_exits_3(callfs: Shell, tmp_path: Path) -> None:
    assert callfs("cp", ":/nothing-here", str(tmp_path / "x")).exit_code == 3
    assert callfs("cp", str(tmp_path / "no-such-local"), ":/x").exit_code == 3


def test_ls_json_is_parseable(callfs: Shell) -> None:
    assert callfs("mkdir", "-p", ":/proj/src").exit_code == 0
    assert callfs("cp", "-", ":/proj/README", input=b"hello").exit_code == 0

    result = callfs("ls", "--json", ":/proj")
    assert result.exit_code == 0
    entries = json.loads(result.stdout)
    assert [(e["name"], e["type"]) for e in entries] == [("src", "directory"), ("README", "file")]
    readme = entries[1]
    assert (readme["path"], readme["size"], readme["mode"], readme["owner"]) == (
        "/proj/README",
        5,
        "0644",
        "api-user-0",
    )


def test_ls_long_and_recursive(callfs: Shell) -> None:
    assert callfs("cp", "-", ":/t/x/y.txt", input=b"yy").exit_code == 0
    long = callfs("ls", "-l", "/t")
    assert long.exit_code == 0
    assert long.stdout.split()[0] == "drwxr-xr-x"
    assert long.stdout.rstrip().endswith("x")

    recursive = callfs("ls", "-R", "/t")
    assert recursive.stdout.splitlines() == ["x", "x/y.txt"]


def test_ls_of_a_file_shows_that_file(callfs: Shell) -> None:
    assert callfs("cp", "-", ":/one.txt", input=b"1").exit_code == 0
    assert callfs("ls", ":/one.txt").stdout == "one.txt\n"


def test_stat_prints_fields_and_json(callfs: Shell) -> None:
    assert callfs("cp", "-", ":/s.txt", input=b"abc").exit_code == 0
    text = callfs("stat", ":/s.txt")
    assert text.exit_code == 0
    assert "Size:  3" in text.stdout and "Mode:  0644 (-rw-r--r--)" in text.stdout
    info = json.loads(callfs("stat", "--json", "/s.txt").stdout)
    assert (info["type"], info["size"], info["etag"] is not None) == ("file", 3, True)


def test_stat_of_a_missing_path_exits_3(callfs: Shell) -> None:
    result = callfs("stat", ":/missing")
    assert result.exit_code == 3
    assert "/missing" in result.stderr


def test_a_wrong_key_exits_4(callfs: Shell) -> None:
    result = callfs("ls", "/", env={"CALLFS_API_KEY": "not-the-key-at-all-000"})
    assert result.exit_code == 4
    assert "AUTHENTICATION_FAILED" in result.stderr


def test_permission_denied_exits_4(callfs: Shell, app_node: AppNode) -> None:
    assert callfs("cp", "-", ":/mine.txt", input=b"m").exit_code == 0
    as_bob = callfs("rm", ":/mine.txt", env={"CALLFS_API_KEY": app_node.key_for("bob")})
    assert as_bob.exit_code == 4


def test_a_missing_key_is_a_usage_error(callfs: Shell) -> None:
    result = CliRunner().invoke(cli, ["ls", "-s", callfs.env["CALLFS_URL"], "/"], env={"CALLFS_API_KEY": None})
    assert result.exit_code == 2


def test_an_unreachable_server_exits_6(callfs: Shell) -> None:
    result = callfs("ls", "--timeout", "2", "-s", f"http://127.0.0.1:{free_port()}", "/")
    assert result.exit_code == 6


def test_mkdir_of_an_existing_directory_exits_5_without_p(callfs: Shell) -> None:
    assert callfs("mkdir", ":/d").exit_code == 0
    assert callfs("mkdir", ":/d").exit_code == 5
    assert callfs("mkdir", "-p", ":/d").exit_code == 0
    assert callfs("mkdir", ":/no/parent").exit_code == 3
    assert callfs("mkdir", "-p", ":/no/parent").exit_code == 0


def test_rm_needs_r_for_a_non_empty_directory(callfs: Shell) -> None:
    assert callfs("cp", "-", ":/r/a/b.txt", input=b"b").exit_code == 0
    assert callfs("rm", ":/r").exit_code == 5
    assert callfs("rm", "-r", ":/r").exit_code == 0
    assert callfs("stat", ":/r").exit_code == 3
    assert callfs("rm", ":/r").exit_code == 3
    assert callfs("rm", "-f", ":/r").exit_code == 0


def test_mv_renames_moves_into_a_directory_and_overwrites_on_request(callfs: Shell) -> None:
    assert callfs("cp", "-", ":/m/a.txt", input=b"A").exit_code == 0
    assert callfs("cp", "-", ":/m/b.txt", input=b"B").exit_code == 0
    assert callfs("mkdir", ":/m/dir").exit_code == 0

    assert callfs("mv", ":/m/a.txt", ":/m/dir").exit_code == 0
    assert callfs("cp", ":/m/dir/a.txt", "-").stdout_bytes == b"A"
    assert callfs("mv", ":/m/dir/a.txt", ":/m/b.txt").exit_code == 5
    assert callfs("mv", "--overwrite", ":/m/dir/a.txt", ":/m/b.txt").exit_code == 0
    assert callfs("cp", ":/m/b.txt", "-").stdout_bytes == b"A"
    assert callfs("mv", "-p", ":/m/b.txt", ":/m/new/deep/b.txt").exit_code == 0
    assert callfs("stat", ":/m/new/deep/b.txt").exit_code == 0


def test_link_prints_a_url_that_downloads_the_file(callfs: Shell) -> None:
    assert callfs("cp", "-", ":/l.txt", input=b"linked bytes").exit_code == 0
    result = callfs("link", ":/l.txt", "--expiry", "120")
    assert result.exit_code == 0
    url = result.stdout.strip()
    assert url.startswith(callfs.env["CALLFS_URL"] + "/download/")

    async def fetch() -> bytes:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            return await resp.read()

    assert asyncio.run(fetch()) == b"linked bytes"
    assert callfs("link", ":/l.txt", "--expiry", "0").exit_code == 2


def test_group_help_documents_the_exit_codes() -> None:
    text = CliRunner().invoke(cli, ["--help"]).output
    for code in ExitCode:
        assert f"  {int(code)}  " in text


def test_the_installed_entry_point_exposes_the_file_commands(app_node: AppNode) -> None:
    env = {**os.environ, "CALLFS_URL": app_node.url, "CALLFS_API_KEY": app_node.api_key}
    missing = subprocess.run(
        [sys.executable, "-m", "callfs", "stat", "callfs:/missing"], env=env, capture_output=True, timeout=60
    )
    assert missing.returncode == 3, missing.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "callfs", "ls", "--json", ":/"], env=env, capture_output=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr
    assert [i for i in json.loads(listing.stdout) if i["path"] not in SYSTEM_DIRECTORIES] == []
