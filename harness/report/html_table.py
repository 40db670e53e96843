"""The HTML report's header and table (:mod:`harness.report.html`): the overall result linked
to the layer to fix, and one row per compared tensor with the layer's notes and boundaries."""

from __future__ import annotations

import math
from collections import Counter

from .html_text import _badge, _e, _fmt, _num, _shape, _verdict, _verdict_text

COLUMNS = [
    "layer",
    "kind",
    "verdict",
    "tensor",
    "side",
    "shape",
    "vs torch",
    "vs jax",
    "tolerance",
    "FD",
    "worst at",
    "user",
    "reference",
]


def _header(data: dict, layers: list[dict], title: str) -> str:
    """Title, overall result (linked to the layer to fix), seed, verdict counts and what to fix first."""
    first = data.get("first_failure")
    where = next((i for i, layer in enumerate(layers) if layer.get("name") == first), None)
    if data.get("ok", all(_verdict(layer) == "pass" for layer in layers)):
        status = '<p class="status ok">All layers pass</p>'
    else:
        status = (
            '<p class="status bad">Some layers fail</p>'
            if where is None
            else f'<p class="status bad">First '
            f'failure: <a href="#layer-{where}">{_e(first)}</a> &mdash; fix this layer first</p>'
        )
    chips = " ".join(_badge(v, f"{n} {v}") for v, n in Counter(_verdict(layer) for layer in layers).most_common())
    down = sum(1 for layer in layers if layer.get("downstream_of"))
    chips += f' <span class="muted">({down} failing only downstream of another layer)</span>' if down else ""
    fix = _notes(layers[where]) if where is not None else ""
    fix = f'<div class="fix"><b>{_e(first)}</b>: {fix}</div>' if fix else ""
    count = f"{len(layers)} layer{'' if len(layers) == 1 else 's'}"
    inf = data.get("inferred")
    inferred = (
        f'<div class="fix"><b>spec inferred from the code ({_e(inf["status"])})</b><ul>'
        + "".join(f"<li>{_e(line)}</li>" for line in inf["layers"])
        + "</ul></div>"
        if inf
        else ""
    )
    return (
        f"<h1>{_e(title)}</h1>{status}<p>seed {_e(data.get('seed', 'n/a'))} &middot; {count}: {chips}</p>{fix}"
        + inferred
    )


def _notes(layer: dict) -> str:
    """What the check says about a layer in words: downstream note, message, diagnoses."""
    parts = (
        [
            f'<div class="downnote">fails only because of <b>{_e(layer["downstream_of"])}</b> &mdash; fix that '
            "layer first</div>"
        ]
        if layer.get("downstream_of")
        else []
    )
    parts += [f'<div class="msg">{_e(layer["message"])}</div>'] if layer.get("message") else []
    parts += [f'<div class="diag">{_e(d)}</div>' for d in layer.get("diagnosis") or []]
    if _verdict(layer) == "reference":
        parts.append(f"<div>PyTorch and JAX disagree with each other ({_fmt(layer.get('refs_error'))})</div>")
    return "".join(parts)


def _td(text: str, cls: str = "num", bad: bool = False, extra: str = "") -> str:
    """A table cell; ``text`` must already be escaped."""
    return f'<td class="{cls}{" bad" if bad else ""}"{extra}>{text}</td>'


def _tensor_cells(t: dict) -> str:
    """The cells of one tensor's row, from its name to the worst element's values."""
    tol, fd = _num(t.get("tolerance")), t.get("fd") or {}
    errs = [
        _td(_fmt(t.get(k)), bad=(_num(t.get(k)) or 0.0) > (tol if tol is not None else math.inf))
        for k in ("error_torch", "error_jax")
    ]
    fd_text = "-" if not fd else "kinks" if fd.get("consistent") is None else _fmt(fd.get("worst"), ".1e")
    fd_title = f' title="{_e(fd.get("probes"))} probes, {_e(fd.get("kinks"))} kinks"' if fd else ""
    index = t.get("worst_index") or []
    return "".join(
        [
            _td(_e(t.get("name", "?")), "mono", not t.get("ok", True)),
            _td(_e(t.get("side", "")), ""),
            _td(_shape(t), "mono"),
            *errs,
            _td(_fmt(tol, ".1e")),
            _td(fd_text, bad=fd.get("consistent") is False, extra=fd_title),
            _td(_e(list(index)) if index else "-", "mono"),
            _td(_fmt(t.get("worst_user"), ".6g")),
            _td(_fmt(t.get("worst_ref"), ".6g")),
        ]
    )


def _boundaries(layer: dict) -> str:
    """The (network) entry's layer boundaries, flagged against the tolerance the check uses for
    them (the largest of the entry's tensors)."""
    rows = layer.get("boundaries") or []
    if not rows:
        return ""
    tol = max((_num(t.get("tolerance")) or 0.0 for t in layer.get("tensors") or []), default=0.0) or 1e-6
    body = "".join(
        f"<tr>{_td(_e(b.get('name', '?')), 'mono')}"
        + "".join(_td(_e(b.get(k)), bad=b.get(k) != 1) for k in ("forward_calls", "backward_calls"))
        + "".join(
            _td(_fmt(b.get(k)), bad=(_num(b.get(k)) or 0.0) > tol)
            for k in ("input_error", "output_error", "grad_error")
        )
        + "</tr>"
        for b in rows
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("layer", "forward calls", "backward calls", "input error", "output error", "upstream grad error")
    )
    return (
        '<table class="boundaries"><caption>What the network\'s own pass fed each layer (relative error '
        f"against the reference; calls other than 1 and errors above {_fmt(tol, '.1e')} in red)</caption>"
        f"<tr>{head}</tr>{body}</table>"
    )


def _layer_block(i: int, layer: dict, first: str | None) -> str:
    """A layer's rows: one per tensor (layer cells spanning them), then its notes and boundaries."""
    verdict, name, tensors = _verdict(layer), layer.get("name", "?"), layer.get("tensors") or [None]
    cls = (
        f"layer v-{verdict}"
        + (" first-failure" if name == first else "")
        + (" downstream" if layer.get("downstream_of") else "")
    )
    span, rows = f' rowspan="{len(tensors)}"' if len(tensors) > 1 else "", []
    for j, t in enumerate(tensors):
        head = (
            (
                f'<td class="lname mono"{span}><b>{_e(name)}</b></td><td{span}>{_e(layer.get("kind", ""))}</td>'
                f"<td{span}>{_badge(verdict, _verdict_text(layer, verdict))}</td>"
            )
            if j == 0
            else ""
        )
        body = _tensor_cells(t) if t else '<td colspan="10" class="muted">no tensor compared</td>'
        rows.append(f'<tr class="{cls}" data-layer="{_e(name)}">{head}{body}</tr>')
    if extra := _notes(layer) + _boundaries(layer):
        rows.append(f'<tr class="{cls} note" data-layer="{_e(name)}"><td colspan="{len(COLUMNS)}">{extra}</td></tr>')
    return f'<tbody class="{cls}" id="layer-{i}">{"".join(rows)}</tbody>'


def _table(data: dict, layers: list[dict]) -> str:
    """The table of every tensor of every layer (id trigrad-table), with a filter for failing layers."""
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    blocks = "".join(_layer_block(i, layer, data.get("first_failure")) for i, layer in enumerate(layers))
    return (
        '<h2>Layers</h2><label><input type="checkbox" id="only-failing"> show only failing layers</label>'
        f'<div class="scroll"><table id="trigrad-table"><thead><tr>{head}</tr></thead>{blocks}</table></div>'
    )
