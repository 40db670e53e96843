"""Rendering a :class:`~harness.results.Report`: the terminal table (rich), strict JSON
(validated by ``schema.json``) and one self-contained HTML page."""

from .files import SCHEMA_PATH, load_schema, write_json
from .html import render_html, write_html
from .terminal import findings, headline, render_terminal, table

__all__ = ["SCHEMA_PATH", "findings", "headline", "load_schema", "render_html", "render_terminal", "table",
           "write_html", "write_json"]
