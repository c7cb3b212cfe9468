"""callfs.logs.configure_logging: the one logging set-up of the node, the operator and the CSI processes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from callfs.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_event_and_extra_fields() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    logging.getLogger("callfs.test").info("hello %s", "world", extra={"request_id": "r-1", "status": 500})
    [line] = lines(out)
    assert line["level"] == "info"
    assert line["logger"] == "callfs.test"
    assert line["event"] == "hello world"
    assert line["request_id"] == "r-1"
    assert line["status"] == 500
    assert line["timestamp"].endswith("Z")


def test_json_lines_from_structlog_loggers_and_bound_context() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    with structlog.contextvars.bound_contextvars(request_id="r-2"):
        structlog.get_logger("callfs.other").debug("did a thing", path="/a")
        logging.getLogger("callfs.std").warning("plain")
    first, second = lines(out)
    assert first == {**first, "level": "debug", "logger": "callfs.other", "event": "did a thing", "path": "/a",
                     "request_id": "r-2"}
    assert second == {**second, "level": "warning", "logger": "callfs.std", "event": "plain", "request_id": "r-2"}


def test_exceptions_are_one_json_line_with_the_traceback() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("callfs.test").exception("failed", extra={"request_id": "r-3"})
    [line] = lines(out)
    assert line["level"] == "error"
    assert line["request_id"] == "r-3"
    assert "RuntimeError: boom" in line["exception"]


def test_level_filters_and_is_case_insensitive() -> None:
    out = io.StringIO()
    configure_logging("WARNING", "json", stream=out)
    logging.getLogger("callfs.test").info("dropped")
    logging.getLogger("callfs.test").error("kept")
    assert [line["event"] for line in lines(out)] == ["kept"]


def test_console_format_shows_event_and_fields() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    logging.getLogger("callfs.test").info("hello", extra={"request_id": "r-4"})
    text = out.getvalue()
    assert "hello" in text
    assert "request_id=r-4" in text
    assert "callfs.test" in text


def test_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)
    logging.getLogger("callfs.test").info("once")
    assert first.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["once"]


@pytest.mark.parametrize(("level", "fmt"), [("trace", "json"), ("info", "xml")])
def test_unknown_level_or_format_is_refused(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level, fmt)


def test_every_command_takes_log_level_and_format() -> None:
    from callfs_csi.main import parser as csi_parser
    from callfs_csi.mount_main import build_parser as mount_parser
    from callfs_csi.mount_service import parser as service_parser
    from callfs_operator.main import parse_args as operator_args

    flags = ["--log-level", "WARNING", "--log-format", "json"]
    operator = operator_args(["-A", *flags])
    assert (operator.log_level, operator.log_format) == ("warning", "json")
    assert operator_args(["-A", "-v"]).log_level == "debug"
    csi = csi_parser().parse_args(flags)
    assert (csi.log_level, csi.log_format) == ("warning", "json")
    mount = mount_parser().parse_args(["http://n:8443", "/v", "/mnt", "--key-file", "k", *flags])
    assert (mount.log_level, mount.log_format) == ("warning", "json")
    service = service_parser().parse_args(["--socket", "/s", *flags])
    assert (service.log_level, service.log_format) == ("warning", "json")
