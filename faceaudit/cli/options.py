"""Command-line options, declared once as the fields of ``pipeline.AuditSettings``.

``audit_options`` generates the ``faceaudit audit`` signature from those fields (Typer
reads a function's ``__signature__``), so a new audit option is one field: its type, default,
help and flag. The stage commands take the options they share with the audit from the
aliases below, with the audit's defaults (``DEFAULTS``), so a help text or a default is
written in one place and a stage command runs its stage as the audit would.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Annotated

import typer

from faceaudit.cli.app import metric_names
from faceaudit.pipeline import AuditSettings

DEFAULTS = AuditSettings()
_FIELDS = {f.name: f for f in dataclasses.fields(AuditSettings)}
_TYPES = typing.get_type_hints(AuditSettings)

# Fields whose settings type the command line spells differently, and how to read them back.
_CLI_TYPES = {"metrics": str | None, "force": list[str] | None}


_READERS: dict[str, Callable] = {"metrics": metric_names, "force": lambda given: tuple(given or ())}


def shared(name: str, *, help: str | None = None):
    """The Typer annotation of the audit option ``name`` (its help replaced by ``help``)."""
    meta = _FIELDS[name].metadata
    if meta["argument"]:
        info = typer.Argument(metavar=meta["metavar"], help=help or meta["help"])
    else:
        flags = () if meta["flag"] is None else (meta["flag"],)
        info = typer.Option(*flags, metavar=meta["metavar"], help=help or meta["help"])
    return Annotated[_CLI_TYPES.get(name, _TYPES[name]), info]


def settings_from(options: dict) -> AuditSettings:
    """``AuditSettings`` from the generated command's keyword arguments."""
    return AuditSettings(**{name: _READERS.get(name, lambda v: v)(value) for name, value in options.items()})


def audit_options(**extra: tuple[object, object]):
    """Decorate ``command(**options)`` with one parameter per ``AuditSettings`` field (in
    field order), then ``extra`` parameters ``name=(annotation, default)`` that are the
    command's own (``--dry-run``)."""

    def decorate(command: Callable) -> Callable:
        parameters = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=shared(name),
                                        default=None if name in _CLI_TYPES else field.default)
                      for name, field in _FIELDS.items()]
        parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
                       for name, (annotation, default) in extra.items()]
        command.__signature__ = inspect.Signature(parameters, return_annotation=None)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate


# The options the stage commands share with the audit.
Seed = shared("seed")
Chains = shared("chains")
Images = shared("images")
Manifest = shared("manifest")
Clip = shared("clip")
AllowOutsideImages = shared("allow_outside_images")
Interval = shared("interval")
Bootstrap = shared("bootstrap")
Metrics = shared("metrics")
RayAddress = shared("ray")
RayWorkers = shared("ray_workers")
