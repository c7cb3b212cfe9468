"""``callfs``: run a storage node (``server``), check its configuration (``config validate``), and work
with files on a node (``ls``, ``cp``, ``mv``, ``rm``, ``mkdir``, ``stat``, ``link``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from callfs import __version__
from callfs.cli.files import EXIT_CODES_HELP, FILE_COMMANDS
from callfs.config import ConfigError, load_config
from callfs.logs import configure_logging

CONFIG_OPTION = click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    help="YAML or JSON config file (default: ./config.yaml if present, else embedded defaults).",
)


@click.group(help="CallFS storage node and client.\n\n" + EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="callfs")
def main() -> None:
    pass


@main.command()
@CONFIG_OPTION
def server(config_path: Path | None) -> None:
    """Run a storage node (embedded defaults: SQLite, local disk under ./callfs-data, 127.0.0.1:8443)."""
    from callfs.workers import serve_node

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(config.log.level, config.log.format)
    try:
        status = serve_node(config)
    except Exception as exc:  # a dependency that cannot be reached at start: one clear line, exit 1
        raise click.ClickException(f"cannot start: {type(exc).__name__}: {exc}") from exc
    sys.exit(status)


@main.group()
def config() -> None:
    """Configuration commands."""


@config.command("validate")
@CONFIG_OPTION
def validate(config_path: Path | None) -> None:
    """Load and validate the configuration, print the effective settings (secrets masked)."""
    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(loaded.masked(), indent=2))


for _command in FILE_COMMANDS:
    main.add_command(_command)
