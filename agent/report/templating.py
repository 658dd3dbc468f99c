"""The reports' Jinja environment. Templates read a run's record as its model (perfagent.summary) strictly: a field
the model does not have raises, where Jinja would render an empty string for it."""
from __future__ import annotations

from pathlib import Path

import jinja2

from perfagent.summary import Record

TEMPLATES = Path(__file__).resolve().parent / "templates"


class _RecordEnvironment(jinja2.Environment):
    def getattr(self, obj, attribute):
        if isinstance(obj, Record):
            return getattr(obj, attribute)  # a misspelt field is an AttributeError, not an empty string
        return super().getattr(obj, attribute)


def environment(**options) -> jinja2.Environment:
    """An environment of the report templates, with `options` (autoescape, keep_trailing_newline)."""
    return _RecordEnvironment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True, lstrip_blocks=True,
                              **options)
