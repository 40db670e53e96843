"""The check of a CS231n-style captioning model (:class:`~harness.adapters.captioning.CaptioningModel`):
every part alone with the user's own layer functions, the loss alone, then ``model.loss``
end to end. Reached through :func:`harness.check_network` (``x=`` features, ``y=`` captions).

One point, from one seed: image features ``(N, F)`` standard normal and captions ``(N, T + 1)``
opening with ``<START>``, a word repeated in each caption (an embedding gradient must
accumulate), ``<END>`` and ``<NULL>`` padding at the end of some (the loss must mask it),
or the user's own. The references run the :class:`~harness.spec.Captioner` once with a random
upstream gradient at the scores; each part is then checked at the reference's own input to it
and upstream gradient (:func:`harness.check.check_point`): ``cap.embed`` with
``word_embedding_forward / backward`` on captions_in, ``cap.project`` with ``affine_*`` on the
features, ``cap.rnn`` with ``rnn_*`` / ``lstm_*`` from the reference's h0, ``cap.vocab`` with
``temporal_affine_*``, and ``(loss)``, ``temporal_softmax_loss(x, y, mask)``, at the reference's
scores. ``(network)`` is ``model.loss(features, captions)``: its loss and every gradient
against the references under ``TemporalSoftmaxCrossEntropy(reduction="batch",
ignore_index=_null)``, and finite differences of its own loss. The model's parameters are
restored bit for bit; the parts are handed copies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import resources
from .adapters.captioning import CaptioningModel, part_spec, wrap_captioning
from .adapters.refs import AdapterError
from .check import check_point
from .kinks import off_kinks, upstream
from .loss_check import loss_entry, loss_model_entry
from .reference_pair import both, values_in
from .results import LayerResult, Report
from .spec import join_path

BATCH, LENGTH = 3, 6  # drawn captions: N = 3 examples of T + 1 = 6 tokens (T = 5 steps)
ROLES = ("embed", "project", "rnn", "vocab")  # the Captioner's parts in walk order
KEYS = {
    "embed": ("W_embed",),
    "project": ("W_proj", "b_proj"),
    "rnn": ("Wx", "Wh", "b"),
    "vocab": ("W_vocab", "b_vocab"),
}


def check_captioning(
    model: Any,
    spec: Any = None,
    *,
    features: Any = None,
    captions: Any = None,
    seed: int = 0,
    fd_probes: int = 2,
    tol_scale: float = 1.0,
    progress: Callable[[str, int, int], None] | None = None,
    layers: Any = None,
) -> Report:
    """Check a CaptioningRNN (raw, wrapped with ``spec`` and ``layers``, or a
    :class:`CaptioningModel`) at ``features (N, F)`` and ``captions (N, T + 1)`` (drawn from
    ``seed`` when None). Returns a :class:`Report` with ``cap.embed``, ``cap.project``,
    ``cap.rnn``, ``cap.vocab``, ``(loss)`` and ``(network)``; a part whose functions were not
    found is left out and the ``(network)`` entry says so."""
    if isinstance(model, CaptioningModel):
        if spec is not None or layers is not None:
            raise AdapterError("check_network: the model is already wrapped; pass spec= and layers= to wrap_captioning")
        wrapped = model
    else:
        wrapped = wrap_captioning(model, spec, layers=layers)
    rng = np.random.default_rng(seed)
    feats, caps = caption_point(wrapped, features, captions, rng)
    x, target = caps[:, :-1].astype(np.int64), caps[:, 1:].astype(np.int64)
    wrapped.features, wrapped.caption_dtype = feats, caps.dtype
    cap = wrapped.captioner
    resources.require(resources.network_estimate(cap, x.shape), f"checking the captioning model on captions {x.shape}")
    g = upstream(rng, cap.output_shape(x.shape), x, seed)
    report = Report(seed=seed)
    tick = progress or (lambda name, done, total: None)
    with wrapped.preserved():
        _drop_uncalled(wrapped, x, target)
        roles = [role for role in (*ROLES, "loss") if _functions(wrapped, role)]
        params = wrapped.get_params()
        refs = both(_reference("torch", cap, params, x, g), _reference("jax", cap, params, x, g), values_in(x, params))
        for role in roles:
            name = "(loss)" if role == "loss" else join_path(cap.name, getattr(cap, role).name)
            tick(name, len(report.layers), len(roles) + 1)
            report.layers.append(
                _blocked(wrapped, name, refs[0])
                or (
                    _loss_part(wrapped, refs[0].output, target, rng, fd_probes, tol_scale)
                    if role == "loss"
                    else _part(wrapped, role, refs, rng, fd_probes, tol_scale)
                )
            )
        tick("(network)", len(report.layers), len(roles) + 1)
        entry = loss_model_entry(wrapped, x, target, rng, fd_probes, tol_scale)
    entry.kind = "captioning model"
    report.layers.append(entry)
    _explain(report, wrapped)
    return report


def from_check_network(
    net: Any, spec: Any, x: Any, y: Any, *, loss: Any, input_shape: Any, wrap_kwargs: dict[str, Any], **options: Any
) -> Report:
    """:func:`harness.check_network` of a captioning model: ``x`` the features, ``y`` the
    captions; ``loss=`` and ``input_shape=`` refused (the loss is the model's own, the point's
    shapes are the features' and the captions'), ``layers=`` the only wrapping option."""
    if loss is not None:
        raise AdapterError(
            "check_network: a captioning model's loss is its own (temporal_softmax_loss, checked as '(loss)'); drop loss="
        )
    if input_shape is not None:
        raise AdapterError(
            "check_network: a captioning model takes x= features (N, F) and y= captions (N, T + 1), each drawn from "
            "the seed when omitted; not input_shape="
        )
    unknown = sorted(set(wrap_kwargs) - {"layers"})
    if unknown:
        raise AdapterError(
            f"check_network: {unknown} do not apply to a captioning model; wrap_captioning takes layers="
        )
    return check_captioning(net, spec, features=x, captions=y, **options, **wrap_kwargs)


def _reference(backend: str, spec: Any, params: dict, x: np.ndarray, g: np.ndarray) -> Callable[[], Any]:
    from reference_models import build

    return lambda: build(backend, spec).vjp(params, x, g)


# --------------------------------------------------------------------------- the point


def caption_point(model: CaptioningModel, features: Any, captions: Any, rng: np.random.Generator) -> tuple[Any, Any]:
    """``(features (N, F) in the model's dtype, captions (N, T + 1) integers)``: the user's,
    checked, or drawn from ``rng`` (see :func:`draw_captions`)."""
    r = model.reading
    n = None
    if captions is not None:
        captions = _given_captions(captions, r.vocab)
        n = captions.shape[0]
    if features is not None:
        f = np.asarray(features)
        if f.ndim != 2 or f.shape[1] != r.features or (n is not None and f.shape[0] != n):
            want = f"({n if n is not None else 'N'}, {r.features})"
            raise AdapterError(
                f"check_network: features (x=) have shape {f.shape}; the model's W_proj takes {want} "
                f"(input_dim {r.features}{', the captions give N' if n is not None else ''})"
            )
        if not np.issubdtype(f.dtype, np.floating):
            raise AdapterError(f"check_network: features (x=) must be floating point, got {f.dtype}")
        if not np.isfinite(f).all():
            raise AdapterError(
                f"check_network: features (x=) hold NaN/Inf at {np.argwhere(~np.isfinite(f))[0].tolist()}"
            )
        features, n = np.array(f, copy=True), f.shape[0]
    n = BATCH if n is None else n
    if captions is None:
        captions = draw_captions(model, n, LENGTH, rng)
    if features is None:
        features = rng.standard_normal((n, r.features)).astype(model.dtype)
    return features, captions


def _given_captions(captions: Any, vocab: int) -> np.ndarray:
    c = np.asarray(captions)
    if c.ndim != 2 or c.shape[1] < 2 or c.dtype == np.bool_ or not np.issubdtype(c.dtype, np.integer):
        raise AdapterError(
            f"check_network: captions (y=) must be integer word indices (N, T + 1) with T >= 1, got {c.dtype} of "
            f"shape {c.shape}"
        )
    if c.min() < 0 or c.max() >= vocab:
        raise AdapterError(
            f"check_network: captions (y=) hold word indices in [{c.min()}, {c.max()}]; the vocabulary (W_embed) "
            f"has {vocab} words"
        )
    return np.array(c, copy=True)


def draw_captions(model: CaptioningModel, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Captions ``(n, length)`` int64 as a dataset's: ``<START>`` first (when the model has one),
    then words (none of the special tokens), a word repeated in every caption; the first caption
    ends with ``<END>`` at its last token, the second after two words, followed by ``<NULL>``
    padding, the others at a random place. Without ``<END>``, the padding alone ends them."""
    r = model.reading
    words = [i for i in range(r.vocab) if i not in (r.null, r.start, r.end)]
    if not words:
        raise AdapterError(f"check_network: the vocabulary of {r.vocab} holds only special tokens; pass captions (y=)")
    caps = rng.choice(words, size=(n, length)).astype(np.int64)
    if r.start is not None:
        caps[:, 0] = r.start
    for i, row in enumerate(caps):
        last = length - 1 if i == 0 else min(3, length - 1) if i == 1 else int(rng.integers(2, length))
        body = range(1, last if r.end is not None else last + 1)  # the words' positions
        if len(body) >= 2:  # a repeated word: its embedding gradient is the sum of two
            a, b = rng.choice(list(body), size=2, replace=False)
            row[b] = row[a]
        if r.end is not None:
            row[last] = r.end
        row[last + 1 :] = r.null
    return caps


# --------------------------------------------------------------------------- the parts


def _functions(model: CaptioningModel, role: str) -> tuple[Any, ...] | None:
    return model.functions.get(model.reading.cell if role == "rnn" else role)


def _drop_uncalled(model: CaptioningModel, x: np.ndarray, target: np.ndarray) -> None:
    """Leave out (into ``model.uncalled``) the functions found by name that ``model.loss`` does
    not call: a subclass whose own ``loss`` uses helpers of its own still finds the base class's
    module, whose functions (unfinished, say) are not the model's code. One call of
    ``model.loss`` at the point, profiled; nothing is left out when it raises (the
    ``(network)`` entry says so), for functions given in ``layers=``, or for a function with no
    Python code to see called (a compiled one)."""
    if model.declared:
        return
    seen: set[Any] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            seen.add(frame.f_code)

    before = sys.getprofile()
    sys.setprofile(profile)
    try:
        model.loss_and_grads(x, target)
    except Exception:
        return
    finally:
        sys.setprofile(before)
    for role, fns in list(model.functions.items()):
        codes = [getattr(fn, "__code__", None) for fn in fns]
        if any(c is not None and c not in seen for c in codes):  # a pair is checked together: both called
            model.uncalled[role] = model.functions.pop(role)


def _part(
    model: CaptioningModel, role: str, refs: tuple[Any, Any], rng: np.random.Generator, probes: int, tol: float
) -> LayerResult:
    """One part checked alone with the user's function pair at the reference's input to it
    and upstream gradient (``refs``: torch's and jax's whole pass), its parameters the model's own
    arrays (handed as copies) in CS231n's layout; the recurrent part's h0 the reference's
    projection of the features."""
    from .adapters.function_layer import wrap_functions
    from .adapters.layouts import Layout

    spec, cap, ref = part_spec(model, role), model.captioner, refs[0]
    path = join_path(cap.name, getattr(cap, role).name)
    arrays = [model.model.params[k] for k in KEYS[role]]
    if role == "rnn":  # the initial state: the projection's output at this point, in the model's dtype
        arrays.insert(0, ref.outputs[join_path(cap.name, cap.project.name)].astype(model.dtype))
    layout = model.layout if role == "rnn" else Layout(linear="in_out")
    forward, backward = _functions(model, role)  # type: ignore[misc]  # present: the caller asked
    pair = wrap_functions(forward, backward, spec, arrays, layout=layout, dtype=model.dtype)
    x = ref.inputs[path]
    x = x if role == "embed" else off_kinks(spec, x, rng, model.dtype)
    # the whole pass holds this part's reference values, but for the projection (no gradient
    # for the features, a buffer there) and a point moved off kinks
    known = role != "project" and x is ref.inputs[path]
    values = (_values(model, role, refs[0]), _values(model, role, refs[1])) if known else None
    result = check_point(pair, x, ref.output_grads[path], rng, fd_probes=probes, tol_scale=tol, name=path, refs=values)
    if not result.ok:
        names = " / ".join(getattr(f, "__name__", "?") for f in (forward, backward))
        result.message = "; ".join(filter(None, [f"{names} with {', '.join(KEYS[role])}", result.message]))
    return result


def _values(model: CaptioningModel, role: str, ref: Any) -> SimpleNamespace:
    """One part's reference values read off the whole pass ``ref``, keyed as a reference of
    the part alone names them (``rnn.weight_ih``; the rnn's ``h0``: the projection's upstream
    gradient; its input gradient: the embedding's)."""
    cap = model.captioner
    part = getattr(cap, role)
    path = join_path(cap.name, part.name)
    grads = {f"{part.name}.{k[len(path) + 1 :]}": v for k, v in ref.param_grads.items() if k.startswith(path + ".")}
    feed = {"embed": None, "rnn": cap.embed, "vocab": cap.rnn}[role]
    if role == "rnn":
        grads[f"{part.name}.h0"] = ref.output_grads[join_path(cap.name, cap.project.name)]
    input_grad = None if feed is None else ref.output_grads[join_path(cap.name, feed.name)]
    return SimpleNamespace(output=ref.outputs[path], input_grad=input_grad, param_grads=grads)


def _blocked(model: CaptioningModel, name: str, ref: Any) -> LayerResult | None:
    """An entry for a part that cannot be checked: the reference's values reaching it (its
    input, upstream gradient, h0; the loss's scores) hold NaN/Inf because another part's
    parameters do (that part's own check says so); None when it can be checked."""
    cap = model.captioner
    owners = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in model.nonfinite_params()))
    if name in owners or not owners:
        return None
    if name == "(loss)":
        reaching = [ref.output]
    else:
        reaching = [ref.inputs[name], ref.output_grads[name]]
        reaching += [ref.outputs[join_path(cap.name, cap.project.name)]] if name.endswith(f".{cap.rnn.name}") else []
    if all(np.isfinite(v).all() for v in reaching if np.issubdtype(np.asarray(v).dtype, np.floating)):
        return None
    return LayerResult(
        name=name,
        kind=model.loss.kind if name == "(loss)" else type(getattr(cap, name.rsplit(".", 1)[1])).__name__,
        verdict="error",
        dtype=str(model.dtype),
        downstream_of=owners[0],
        message=f"not checked: the reference's values reaching it hold NaN/Inf (see '{owners[0]}')",
    )


def _loss_part(
    model: CaptioningModel, scores: np.ndarray, target: np.ndarray, rng: np.random.Generator, probes: int, tol: float
) -> LayerResult:
    """``temporal_softmax_loss(x, y, mask)`` at the reference's scores ``(N, T, V)``: handed
    y = captions_out and mask = (captions_out != _null), as the model hands them."""
    from .adapters.loss import wrap_loss

    (fn,) = model.functions["loss"]
    wloss = wrap_loss(fn, model.loss, mask=True, dtype=model.dtype)
    return loss_entry(wloss, scores, target, rng, probes, tol)


# --------------------------------------------------------------------------- explaining (network)


def _explain(report: Report, model: CaptioningModel) -> None:
    """The ``(network)`` entry's message: which part explains its failure (the first failing,
    ``downstream_of``), or, every part passing alone, the wiring in ``model.loss`` with the
    gradients it gets wrong by the model's own keys; and the parts not checked alone."""
    entry, parts = report.layers[-1], report.layers[:-1]
    notes = [_unchecked(model)] if len(parts) < len(ROLES) + 1 else []
    failing = ("forward", "backward", "both", "error")
    failed = next((p.name for p in parts if p.verdict in failing and p.downstream_of is None), None)
    unsure = [p.name for p in parts if p.verdict == "inconclusive"]
    if not entry.ok and failed is not None:
        entry.downstream_of = failed
        notes.append(f"explained by '{failed}', which fails alone: fix it first")
    elif entry.verdict in ("forward", "backward", "both") and not unsure and not notes:
        wrong = [model.user_key(t.name) for t in entry.tensors if t.side == "backward" and not t.ok]
        notes.append(
            "every part passes alone but model.loss does not: the wiring in loss() is at fault (what it hands "
            "each function, or what it keeps of their returns)"
            + (f"; wrong: {', '.join(f'grads[{k!r}]' for k in wrong)}" if wrong else "")
        )
    elif not entry.ok and unsure:
        notes.append(
            f"{', '.join(repr(u) for u in unsure)} could not be judged alone (inconclusive): rerun with another seed"
        )
    entry.message = "; ".join(filter(None, [entry.message, *notes]))


def _unchecked(model: CaptioningModel) -> str:
    names = {r: n for r, n in _names(model).items() if _functions(model, r) is None}
    key = {r: model.reading.cell if r == "rnn" else r for r in names}
    missing = [f"'{r}' ({' / '.join(n)})" for r, n in names.items() if key[r] not in model.uncalled]
    uncalled = [f"'{r}' ({' / '.join(n)})" for r, n in names.items() if key[r] in model.uncalled]
    return "; ".join(
        [f"not checked alone: {', '.join(missing)}: not found in {model.searched}"] * bool(missing)
        + [f"not checked alone: {', '.join(uncalled)}: found in {model.searched}, but loss() does not call them"]
        * bool(uncalled)
        + [
            "pass layers= (your rnn_layers module, or a dict of its functions by name) to wrap_captioning "
            "to check the functions it calls"
        ]
    )


def _names(model: CaptioningModel) -> dict[str, tuple[str, ...]]:
    from .adapters.captioning import FUNCTIONS

    return {role: FUNCTIONS[model.reading.cell if role == "rnn" else role] for role in (*ROLES, "loss")}


__all__ = ["caption_point", "check_captioning", "draw_captions", "from_check_network"]
