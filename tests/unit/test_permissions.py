"""The POSIX-style permission model (docs/rest-api.md, "Permissions")."""

from __future__ import annotations

import pytest

from callfs.errors import PermissionDenied
from callfs.models import Inode, InodeType
from callfs.permissions import (
    DEFAULT_DIR_MODE,
    DEFAULT_FILE_MODE,
    EXECUTE,
    READ,
    ROOT_DIR_MODE,
    WRITE,
    Caller,
    allows,
    format_mode,
    parse_mode,
    require,
    require_entry_change,
    require_owner,
)

ALICE = Caller("alice", frozenset({"staff"}))
BOB = Caller("bob", frozenset({"staff"}))
CAROL = Caller("carol")
ROOT = Caller("root")
PROXY = Caller("internal-proxy")


def file(mode: int, owner: str = "alice", group: str = "staff", path: str = "/d/f") -> Inode:
    return Inode(path=path, type=InodeType.FILE, mode=mode, owner=owner, group=group)


def directory(mode: int, owner: str = "alice", group: str = "staff", path: str = "/d") -> Inode:
    return Inode(path=path, type=InodeType.DIRECTORY, mode=mode, owner=owner, group=group)


def test_documented_defaults() -> None:
    assert DEFAULT_FILE_MODE == 0o644
    assert DEFAULT_DIR_MODE == 0o755
    assert ROOT_DIR_MODE == 0o1777


@pytest.mark.parametrize(
    ("caller", "mode", "want", "allowed"),
    [
        (ALICE, 0o600, READ | WRITE, True),  # owner class
        (ALICE, 0o400, WRITE, False),
        (BOB, 0o640, READ, True),  # group class
        (BOB, 0o640, WRITE, False),
        (CAROL, 0o644, READ, True),  # other class
        (CAROL, 0o640, READ, False),
        (CAROL, 0o646, WRITE, True),
        (ALICE, 0o700, EXECUTE, True),
        (ALICE, 0o600, EXECUTE, False),
        (ALICE, 0o600, READ | WRITE | EXECUTE, False),  # all bits of want are needed
    ],
)
def test_allows_picks_the_owner_group_or_other_class(caller: Caller, mode: int, want: int, allowed: bool) -> None:
    assert allows(caller, file(mode), want) is allowed


def test_owner_class_is_used_exclusively_even_when_other_is_more_permissive() -> None:
    # POSIX: the owner gets the owner bits only, never falls through to group/other.
    assert allows(ALICE, file(0o066), READ) is False
    assert allows(BOB, file(0o606), READ) is False  # group member gets group bits only


@pytest.mark.parametrize("superuser", [ROOT, PROXY])
def test_superusers_bypass_every_check(superuser: Caller) -> None:
    assert superuser.is_superuser
    assert allows(superuser, file(0o000, owner="alice"), READ | WRITE | EXECUTE)


def test_require_raises_permission_denied_naming_user_action_and_path() -> None:
    require(CAROL, file(0o644), READ, "read")
    with pytest.raises(PermissionDenied, match="carol may not write /d/f") as info:
        require(CAROL, file(0o644), WRITE, "write")
    assert info.value.status == 403
    assert info.value.code == "PERMISSION_DENIED"


def test_creating_an_entry_needs_write_on_the_parent() -> None:
    require_entry_change(ALICE, directory(0o755), None, "create")
    with pytest.raises(PermissionDenied):
        require_entry_change(CAROL, directory(0o755), None, "create")
    require_entry_change(BOB, directory(0o775), None, "create")


def test_write_on_the_entry_itself_does_not_allow_deleting_it() -> None:
    entry = file(0o666, owner="carol")
    with pytest.raises(PermissionDenied):
        require_entry_change(CAROL, directory(0o755), entry, "delete")


def test_without_sticky_bit_anyone_with_write_on_the_parent_may_delete_others_entries() -> None:
    require_entry_change(CAROL, directory(0o777, owner="alice"), file(0o644, owner="bob"), "delete")


def test_sticky_directory_refuses_deleting_another_users_entry() -> None:
    with pytest.raises(PermissionDenied, match="sticky"):
        require_entry_change(CAROL, directory(0o1777, owner="alice"), file(0o644, owner="bob"), "delete")


def test_sticky_directory_lets_the_entry_owner_delete_it() -> None:
    require_entry_change(CAROL, directory(0o1777, owner="alice"), file(0o644, owner="carol"), "delete")


def test_sticky_directory_lets_the_directory_owner_delete_any_entry() -> None:
    require_entry_change(ALICE, directory(0o1777, owner="alice"), file(0o644, owner="bob"), "rename")


@pytest.mark.parametrize("superuser", [ROOT, PROXY])
def test_sticky_directory_lets_superusers_delete_any_entry(superuser: Caller) -> None:
    require_entry_change(superuser, directory(0o1755, owner="alice"), file(0o600, owner="bob"), "delete")


def test_sticky_rule_does_not_apply_to_creating_a_new_entry() -> None:
    require_entry_change(CAROL, directory(0o1777, owner="alice", path="/"), None, "create")


def test_sticky_entry_owner_still_needs_write_on_the_parent() -> None:
    with pytest.raises(PermissionDenied, match="entries in"):
        require_entry_change(CAROL, directory(0o1755, owner="alice"), file(0o644, owner="carol"), "delete")


def test_only_owner_or_superuser_may_chmod() -> None:
    target = file(0o777, owner="alice")
    require_owner(ALICE, target, "chmod")
    require_owner(ROOT, target, "chmod")
    require_owner(PROXY, target, "chown")
    with pytest.raises(PermissionDenied, match="only the owner of /d/f may chmod"):
        require_owner(BOB, target, "chmod")  # even with full group/other permissions


@pytest.mark.parametrize(
    ("text", "mode"), [("0644", 0o644), ("644", 0o644), ("755", 0o755), ("1777", 0o1777), ("0000", 0), ("7777", 0o7777)]
)
def test_parse_mode_reads_three_or_four_octal_digits(text: str, mode: int) -> None:
    assert parse_mode(text) == mode


@pytest.mark.parametrize(
    "text", ["", "64", "07777", "0o644", "0x1ff", "888", "abc", "-644", " 644", "\uff16\uff14\uff14", "64 "]
)
def test_parse_mode_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="octal digits"):
        parse_mode(text)


@pytest.mark.parametrize(
    ("mode", "text"), [(0o644, "0644"), (0o1777, "1777"), (0o7, "0007"), (0, "0000"), (0o100644, "0644")]
)
def test_format_mode_gives_four_octal_digits(mode: int, text: str) -> None:
    assert format_mode(mode) == text


@pytest.mark.parametrize("mode", range(0, 0o10000, 0o123))
def test_format_and_parse_round_trip(mode: int) -> None:
    assert parse_mode(format_mode(mode)) == mode


# --- search permission, names, chown and chmod rules --------------------------------------------------------


def _dir(path: str, mode: int, owner: str = "alice") -> Inode:
    return Inode(path=path, type=InodeType.DIRECTORY, mode=mode, owner=owner, group=owner)


def test_search_needs_x_on_every_ancestor_and_root_passes() -> None:
    from callfs.permissions import require_search

    chain = [_dir("/", ROOT_DIR_MODE, "root"), _dir("/private", 0o700), _dir("/private/open", 0o777)]
    with pytest.raises(PermissionDenied, match="/private"):
        require_search(Caller("bob"), chain)
    require_search(Caller("alice"), chain)
    require_search(Caller("root"), chain)
    require_search(Caller("bob"), [*chain[:1], _dir("/private", 0o711), chain[2]])  # x without r is enough
    # Resolution stops at a file: nothing lies below it, the caller reports that.
    file = Inode(path="/f", type=InodeType.FILE, mode=0o600, owner="alice", group="alice")
    require_search(Caller("bob"), [chain[0], file])


@pytest.mark.parametrize("name", ["alice", "api-user-0", "internal-proxy", "a.b_c@d", "_svc", "x" * 64, "Root1"])
def test_valid_user_names(name: str) -> None:
    from callfs.permissions import is_valid_name, validate_name

    assert is_valid_name(name)
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", " ", "a b", "evil\r\nX-Injected: 1", "bob\n", "nul\x00", "x" * 65, "-rf", ".hidden", "@x", "é",
             "a/b", "tab\t"],
)
def test_invalid_user_names_are_bad_requests(name: str) -> None:
    from callfs.errors import BadRequest
    from callfs.permissions import is_valid_name, validate_name

    assert not is_valid_name(name)
    with pytest.raises(BadRequest):
        validate_name(name, "owner")


def test_chown_rules() -> None:
    from callfs.permissions import require_chown

    entry = Inode(path="/f", type=InodeType.FILE, owner="bob", group="bob")
    bob = Caller("bob", frozenset({"alice"}))
    require_chown(bob, entry, "bob", None)  # keeping itself as owner
    require_chown(bob, entry, None, "alice")  # a group it belongs to
    require_chown(bob, entry, None, "bob")  # its own name
    with pytest.raises(PermissionDenied):
        require_chown(bob, entry, "alice", None)  # giving it away
    with pytest.raises(PermissionDenied):
        require_chown(bob, entry, None, "root")  # a group it is not in
    with pytest.raises(PermissionDenied):
        require_chown(Caller("alice"), entry, None, "alice")  # not the owner
    require_chown(Caller("root"), entry, "alice", "staff")


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o6777, 0o644, 0o1777, 0o0])
def test_chmod_keeps_every_mode_bit_for_the_owner_in_the_group(mode: int) -> None:
    from callfs.permissions import chmod_mode

    entry = Inode(path="/x", type=InodeType.FILE, mode=0o644, owner="bob", group="alice")
    assert chmod_mode(Caller("bob", frozenset({"alice"})), entry, mode) == mode
    assert chmod_mode(Caller("root"), entry, mode) == mode


def test_chmod_clears_setgid_when_the_caller_is_not_in_the_group() -> None:
    from callfs.permissions import chmod_mode

    entry = Inode(path="/x", type=InodeType.FILE, mode=0o644, owner="bob", group="staff")
    assert chmod_mode(Caller("bob"), entry, 0o6755) == 0o4755  # POSIX chmod(2)


@pytest.mark.parametrize("mode", [-1, 0o10000])
def test_chmod_refuses_modes_outside_the_twelve_bits(mode: int) -> None:
    from callfs.errors import BadRequest
    from callfs.permissions import chmod_mode

    with pytest.raises(BadRequest):
        chmod_mode(Caller("root"), Inode(path="/x", type=InodeType.FILE), mode)


@pytest.mark.parametrize("value", [0, 1000, 2**32 - 2])
def test_numeric_ids_in_range_are_accepted(value: int) -> None:
    from callfs.permissions import check_id

    assert check_id(value, "uid") == value


@pytest.mark.parametrize("value", [-1, 2**32 - 1, True, "1000", 1.0, None])
def test_numeric_ids_out_of_range_or_not_integers_are_refused(value: object) -> None:
    from callfs.errors import BadRequest
    from callfs.permissions import check_id

    with pytest.raises(BadRequest, match="uid"):
        check_id(value, "uid")


def test_setting_times_needs_the_owner_unless_it_is_now_with_write_permission() -> None:
    from callfs.permissions import require_set_times

    writable = Inode(path="/x", type=InodeType.FILE, mode=0o666, owner="bob", group="bob")
    require_set_times(Caller("bob"), writable.evolve(mode=0o444), explicit=True)
    require_set_times(Caller("root"), writable.evolve(mode=0o444), explicit=True)
    require_set_times(Caller("alice"), writable, explicit=False)
    with pytest.raises(PermissionDenied):
        require_set_times(Caller("alice"), writable, explicit=True)  # POSIX utimensat: values need the owner
    with pytest.raises(PermissionDenied):
        require_set_times(Caller("alice"), writable.evolve(mode=0o644), explicit=False)


def test_entries_in_a_setgid_directory_take_its_group() -> None:
    from callfs.permissions import inherited

    plain = Inode(path="/d", type=InodeType.DIRECTORY, mode=0o755, owner="bob", group="bob", gid=7)
    assert inherited(plain, directory=True, mode=0o755, group="eve") == {"group": "eve", "gid": None, "mode": 0o755}
    setgid = plain.evolve(mode=0o2775, group="staff", gid=50)
    assert inherited(setgid, directory=True, mode=0o755, group="eve") == {"group": "staff", "gid": 50, "mode": 0o2755}
    assert inherited(setgid, directory=False, mode=0o644, group="eve") == {"group": "staff", "gid": 50, "mode": 0o644}
