"""Rendering a :class:`~harness.results.Report`: the terminal table (rich), strict JSON
(validated by ``schema.json``) and one self-contained HTML page. The renderers check a report
dict against the schema first and raise :class:`ReportError` for one that does not fit."""

from .files import SCHEMA_PATH, load_schema, write_json
from .html import render_html, write_html
from .terminal import findings, headline, render_terminal, table
from .validate import ReportError, report_data

__all__ = [
    "SCHEMA_PATH",
    "ReportError",
    "findings",
    "headline",
    "load_schema",
    "render_html",
    "render_terminal",
    "report_data",
    "table",
    "write_html",
    "write_json",
]
