"""``proto/csi.proto`` matches the CSI v1.12.0 specification on the wire.

The upstream specification module (``github.com/container-storage-interface/spec`` at v1.12.0, pinned by its
go.sum hash) is fetched through the Go module proxy with ``go mod download -json``; its ``csi.proto`` is compiled
with grpcio-tools in a temporary directory, and every message, enum, service and extension of the result is
compared field by field with the descriptor registered by the committed ``callfs_csi.csi_pb2``: names, numbers,
types, labels, type names, oneofs, map entries, streaming flags and options (``csi_secret``, the alpha markers,
``map_entry``...). Comments, declaration order and source layout are not compared: they are not on the wire.

Without ``go`` the upstream comparison is skipped on a developer machine and fails under CI (``CI=true``), where
the toolchain is part of the environment.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator

import pytest
from google.protobuf import descriptor_pb2

from callfs_csi import csi_pb2
from support.gomod import download

UPSTREAM_MODULE = "github.com/container-storage-interface/spec"
UPSTREAM_VERSION = "v1.12.0"
# The go.sum hash of the release: the download must be that exact tree.
UPSTREAM_SUM = "h1:zrFOEqpR5AghNaaDG4qyedwPBqU2fU0dWjLQMP/azK0="

FileProto = descriptor_pb2.FileDescriptorProto
MessageProto = descriptor_pb2.DescriptorProto
EnumProto = descriptor_pb2.EnumDescriptorProto
FieldProto = descriptor_pb2.FieldDescriptorProto


# --- the comparison -----------------------------------------------------------------------------------------


def _options(options: object) -> list[tuple[int, int, bytes]]:
    """Decode an options message into sorted ``(field number, wire type, raw value)`` triples.

    Works on the wire bytes, so extension options (``csi_secret`` = 1059, alpha markers = 1060) compare the same
    whether or not the extension is registered in this process; an empty options message equals an absent one.
    """
    data = options.SerializeToString()  # type: ignore[attr-defined]
    triples: list[tuple[int, int, bytes]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        tag = varint()
        number, wire_type = tag >> 3, tag & 7
        start = pos
        if wire_type == 0:
            varint()
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length = varint()
            start = pos
            pos += length
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type} in options")
        triples.append((number, wire_type, data[start:pos]))
    return sorted(triples)


def _messages(messages: Iterable[MessageProto], scope: str) -> Iterator[tuple[str, MessageProto]]:
    for message in messages:
        name = f"{scope}.{message.name}"
        yield name, message
        yield from _messages(message.nested_type, name)


def _enums(file: FileProto) -> Iterator[tuple[str, EnumProto]]:
    scope = f".{file.package}"
    for enum in file.enum_type:
        yield f"{scope}.{enum.name}", enum
    for name, message in _messages(file.message_type, scope):
        for enum in message.enum_type:
            yield f"{name}.{enum.name}", enum


def _compare_sets(what: str, ours: Iterable[str], theirs: Iterable[str]) -> list[str]:
    ours_set, theirs_set = set(ours), set(theirs)
    return [f"{what} {n}: missing in ours" for n in sorted(theirs_set - ours_set)] + [
        f"{what} {n}: not in the specification" for n in sorted(ours_set - theirs_set)
    ]


def _default_json_name(name: str) -> str:
    """protoc's JSON name for a field without ``json_name``: underscores dropped, the letter after each capitalised.

    Python gencode strips ``json_name`` from its embedded descriptor; a descriptor set keeps it.
    """
    parts = name.split("_")
    return parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def _field_facts(field: FieldProto, oneofs: list[str]) -> dict[str, object]:
    return {
        "number": field.number,
        "type": FieldProto.Type.Name(field.type),
        "label": FieldProto.Label.Name(field.label),
        "type_name": field.type_name,
        "extendee": field.extendee,
        "default_value": field.default_value,
        "oneof": oneofs[field.oneof_index] if field.HasField("oneof_index") else None,
        "proto3_optional": field.proto3_optional,
        "json_name": field.json_name or _default_json_name(field.name),
        "options": _options(field.options),
    }


def _compare_facts(where: str, ours: dict[str, object], theirs: dict[str, object]) -> list[str]:
    return [f"{where}: {key} is {ours[key]!r}, the specification says {theirs[key]!r}"
            for key in theirs if ours[key] != theirs[key]]


def _compare_fields(where: str, ours: Iterable[FieldProto], ours_oneofs: list[str], theirs: Iterable[FieldProto],
                    theirs_oneofs: list[str]) -> list[str]:
    ours_by_name = {f.name: f for f in ours}
    theirs_by_name = {f.name: f for f in theirs}
    differences = _compare_sets(f"field {where}", ours_by_name, theirs_by_name)
    for name in sorted(ours_by_name.keys() & theirs_by_name.keys()):
        differences += _compare_facts(f"field {where}.{name}", _field_facts(ours_by_name[name], ours_oneofs),
                                      _field_facts(theirs_by_name[name], theirs_oneofs))
    return differences


def _compare_message(name: str, ours: MessageProto, theirs: MessageProto) -> list[str]:
    ours_oneofs = [o.name for o in ours.oneof_decl]
    theirs_oneofs = [o.name for o in theirs.oneof_decl]
    differences = _compare_facts(
        f"message {name}",
        {"options": _options(ours.options), "oneofs": sorted(ours_oneofs),
         "oneof options": sorted((o.name, tuple(_options(o.options))) for o in ours.oneof_decl),
         "reserved ranges": sorted((r.start, r.end) for r in ours.reserved_range),
         "reserved names": sorted(ours.reserved_name),
         "extension ranges": sorted((r.start, r.end) for r in ours.extension_range)},
        {"options": _options(theirs.options), "oneofs": sorted(theirs_oneofs),
         "oneof options": sorted((o.name, tuple(_options(o.options))) for o in theirs.oneof_decl),
         "reserved ranges": sorted((r.start, r.end) for r in theirs.reserved_range),
         "reserved names": sorted(theirs.reserved_name),
         "extension ranges": sorted((r.start, r.end) for r in theirs.extension_range)},
    )
    differences += _compare_fields(name, ours.field, ours_oneofs, theirs.field, theirs_oneofs)
    differences += _compare_fields(f"{name} (extension)", ours.extension, ours_oneofs, theirs.extension,
                                   theirs_oneofs)
    return differences


def _compare_enum(name: str, ours: EnumProto, theirs: EnumProto) -> list[str]:
    differences = _compare_facts(
        f"enum {name}",
        {"options": _options(ours.options), "reserved ranges": sorted((r.start, r.end) for r in ours.reserved_range),
         "reserved names": sorted(ours.reserved_name)},
        {"options": _options(theirs.options),
         "reserved ranges": sorted((r.start, r.end) for r in theirs.reserved_range),
         "reserved names": sorted(theirs.reserved_name)},
    )
    ours_values = {v.name: v for v in ours.value}
    theirs_values = {v.name: v for v in theirs.value}
    differences += _compare_sets(f"enum value {name}", ours_values, theirs_values)
    for value in sorted(ours_values.keys() & theirs_values.keys()):
        differences += _compare_facts(
            f"enum value {name}.{value}",
            {"number": ours_values[value].number, "options": _options(ours_values[value].options)},
            {"number": theirs_values[value].number, "options": _options(theirs_values[value].options)},
        )
    return differences


def _compare_service(name: str, ours: descriptor_pb2.ServiceDescriptorProto,
                     theirs: descriptor_pb2.ServiceDescriptorProto) -> list[str]:
    differences = _compare_facts(f"service {name}", {"options": _options(ours.options)},
                                 {"options": _options(theirs.options)})
    ours_methods = {m.name: m for m in ours.method}
    theirs_methods = {m.name: m for m in theirs.method}
    differences += _compare_sets(f"method {name}", ours_methods, theirs_methods)
    for method in sorted(ours_methods.keys() & theirs_methods.keys()):
        facts = [
            {"input_type": m.input_type, "output_type": m.output_type, "client_streaming": m.client_streaming,
             "server_streaming": m.server_streaming, "options": _options(m.options)}
            for m in (ours_methods[method], theirs_methods[method])
        ]
        differences += _compare_facts(f"method {name}.{method}", facts[0], facts[1])
    return differences


def descriptor_differences(ours: FileProto, theirs: FileProto) -> list[str]:
    """Every wire-relevant difference between two compiled ``.proto`` files, one sentence each.

    ``ours`` and ``theirs`` are FileDescriptorProtos (``theirs`` is the reference). Elements are matched by
    fully-qualified name; an empty list means the two files define the same messages, enums, services and
    extensions with the same numbers, types, labels, type names, oneofs, map entries, streaming and options.
    """
    differences = _compare_facts(
        "file",
        {"package": ours.package, "syntax": ours.syntax, "dependencies": sorted(ours.dependency),
         "options": _options(ours.options)},
        {"package": theirs.package, "syntax": theirs.syntax, "dependencies": sorted(theirs.dependency),
         "options": _options(theirs.options)},
    )
    scope = f".{theirs.package}"
    ours_messages = dict(_messages(ours.message_type, f".{ours.package}"))
    theirs_messages = dict(_messages(theirs.message_type, scope))
    differences += _compare_sets("message", ours_messages, theirs_messages)
    for name in sorted(ours_messages.keys() & theirs_messages.keys()):
        differences += _compare_message(name, ours_messages[name], theirs_messages[name])

    ours_enums, theirs_enums = dict(_enums(ours)), dict(_enums(theirs))
    differences += _compare_sets("enum", ours_enums, theirs_enums)
    for name in sorted(ours_enums.keys() & theirs_enums.keys()):
        differences += _compare_enum(name, ours_enums[name], theirs_enums[name])

    ours_services = {s.name: s for s in ours.service}
    theirs_services = {s.name: s for s in theirs.service}
    differences += _compare_sets("service", ours_services, theirs_services)
    for name in sorted(ours_services.keys() & theirs_services.keys()):
        differences += _compare_service(name, ours_services[name], theirs_services[name])

    differences += _compare_fields(f"{scope} (extension)", ours.extension, [], theirs.extension, [])
    return differences


def _ours() -> FileProto:
    return FileProto.FromString(csi_pb2.DESCRIPTOR.serialized_pb)


# --- the comparison can fail ----------------------------------------------------------------------------------


def _message(file: FileProto, *path: str) -> MessageProto:
    found = next(m for m in file.message_type if m.name == path[0])
    for name in path[1:]:
        found = next(m for m in found.nested_type if m.name == name)
    return found


def _field(file: FileProto, *path: str) -> FieldProto:
    return next(f for f in _message(file, *path[:-1]).field if f.name == path[-1])


def _renumber(file: FileProto) -> None:
    _field(file, "CreateVolumeRequest", "name").number = 9


def _retype(file: FileProto) -> None:
    _field(file, "CapacityRange", "required_bytes").type = FieldProto.TYPE_UINT64


def _make_repeated(file: FileProto) -> None:
    _field(file, "NodeStageVolumeRequest", "staging_target_path").label = FieldProto.LABEL_REPEATED


def _point_elsewhere(file: FileProto) -> None:
    _field(file, "CreateVolumeResponse", "volume").type_name = ".csi.v1.Snapshot"


def _drop_secret_marker(file: FileProto) -> None:
    _field(file, "NodePublishVolumeRequest", "secrets").options.Clear()


def _leave_oneof(file: FileProto) -> None:
    _field(file, "VolumeCapability", "mount").ClearField("oneof_index")


def _unmap(file: FileProto) -> None:
    _message(file, "GetPluginInfoResponse", "ManifestEntry").options.ClearField("map_entry")


def _renumber_enum_value(file: FileProto) -> None:
    mode = next(e for e in _message(file, "VolumeCapability", "AccessMode").enum_type if e.name == "Mode")
    next(v for v in mode.value if v.name == "SINGLE_NODE_SINGLE_WRITER").number = 8


def _drop_enum_value(file: FileProto) -> None:
    del next(e for e in file.enum_type if e.name == "BlockMetadataType").value[-1]


def _stop_streaming(file: FileProto) -> None:
    service = next(s for s in file.service if s.name == "SnapshotMetadata")
    service.method[0].server_streaming = False


def _drop_method(file: FileProto) -> None:
    del next(s for s in file.service if s.name == "Node").method[-1]


def _drop_message(file: FileProto) -> None:
    del file.message_type[-1]


def _renumber_extension(file: FileProto) -> None:
    next(e for e in file.extension if e.name == "csi_secret").number = 1061


def _rename_package(file: FileProto) -> None:
    file.package = "csi.v2"


MUTATIONS: list[Callable[[FileProto], None]] = [
    _renumber, _retype, _make_repeated, _point_elsewhere, _drop_secret_marker, _leave_oneof, _unmap,
    _renumber_enum_value, _drop_enum_value, _stop_streaming, _drop_method, _drop_message, _renumber_extension,
    _rename_package,
]


def test_a_descriptor_has_no_difference_with_itself() -> None:
    assert descriptor_differences(_ours(), _ours()) == []


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda m: m.__name__.strip("_"))
def test_comparison_reports_a_wire_relevant_change(mutate: Callable[[FileProto], None]) -> None:
    changed = copy.deepcopy(_ours())
    mutate(changed)
    assert descriptor_differences(changed, _ours()) != []
    assert descriptor_differences(_ours(), changed) != []


def test_empty_options_equal_absent_options() -> None:
    empty = descriptor_pb2.MethodOptions()
    assert _options(empty) == []
    marked = copy.deepcopy(_ours())
    method = next(s for s in marked.service if s.name == "Identity").method[0]
    method.options.SetInParent()
    assert descriptor_differences(marked, _ours()) == []


# --- the upstream specification --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> FileProto:
    """The specification's csi.proto at v1.12.0, compiled by grpcio-tools into a FileDescriptorProto."""
    work = tmp_path_factory.mktemp("csi-spec")
    spec = download(UPSTREAM_MODULE, UPSTREAM_VERSION, UPSTREAM_SUM, work)
    (work / "csi.proto").write_bytes((spec / "csi.proto").read_bytes())
    descriptor_set = work / "csi.pb"
    compiled = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{work}", f"--descriptor_set_out={descriptor_set}",
         "csi.proto"],
        cwd=work, capture_output=True, text=True, timeout=120, check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    assert [f.name for f in files] == ["csi.proto"]
    return files[0]


def test_upstream_release_defines_the_services_we_serve(upstream: FileProto) -> None:
    assert upstream.package == "csi.v1"
    assert {s.name for s in upstream.service} >= {"Identity", "Controller", "Node"}


def test_every_descriptor_matches_the_csi_specification(upstream: FileProto) -> None:
    differences = descriptor_differences(_ours(), upstream)
    assert differences == [], "proto/csi.proto differs from CSI " + UPSTREAM_VERSION + ":\n" + "\n".join(differences)


def test_every_upstream_message_and_enum_is_compared(upstream: FileProto) -> None:
    # Guards the comparison itself: it must walk nested types, not only the top level.
    messages = dict(_messages(upstream.message_type, ".csi.v1"))
    assert ".csi.v1.VolumeCapability.AccessMode" in messages
    assert ".csi.v1.GetPluginInfoResponse.ManifestEntry" in messages
    assert ".csi.v1.VolumeCapability.AccessMode.Mode" in dict(_enums(upstream))
    assert len(messages) == len(dict(_messages(_ours().message_type, ".csi.v1")))
