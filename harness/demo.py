"""``trigrad demo``: a bundled network checked correct, then with one mistake
(``--example lenet``, the default, ``--example lstm``, a CS231n-style LSTM language model, or
``--example autograd``, a torch network of custom autograd Functions with handwritten backwards).

What a newcomer should see in a minute: a handwritten network in TensorFlow habits (NHWC
data, HWIO kernels, ``x @ W + b``) ported into PyTorch and JAX and checked layer by layer;
the correct code passes; one realistic mistake is pinned to its layer and side with a
diagnosis, next to the code that makes it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_BUG = "conv2-dx-kernel-not-rotated"
DEFAULT_LSTM_BUG = "lstm-bptt-no-carry"  # the BPTT mistake, its timestep named
DEFAULT_AUTOGRAD_BUG = "fc2-weight-grad-transposed"  # a wrong backward torch's shape check cannot see


def progress_bar(console: Any) -> Any:
    """A transient rich progress bar, or a no-op context off a terminal."""
    from contextlib import nullcontext

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if not console.is_terminal:
        return nullcontext(None)
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def ticker(bar: Any, label: str) -> Callable[[str, int, int], None] | None:
    """``check_network``'s ``progress`` callback driving ``bar`` (None without a bar)."""
    if bar is None:
        return None
    task = bar.add_task(label, total=None)

    def tick(name: str, done: int, total: int) -> None:
        bar.update(task, description=f"{label}: {name}", completed=done, total=total)

    return tick


@dataclass(frozen=True)
class DemoExample:
    """One bundled example the demo can show: ``build(variant, seed=) -> Example``,
    ``variants()`` its bugs by name, ``default_bug``, ``what`` (the code in a few words, for
    the listing) and ``intro(ex)``, the demo's first line."""

    what: str
    default_bug: str
    build: Callable[..., Any]
    variants: Callable[[], dict[str, Any]]
    intro: Callable[[Any], str]


def _lenet() -> DemoExample:
    from .examples import VARIANTS, build

    def intro(ex: Any) -> str:
        n_params = sum(v.size for v in ex.net.get_params().values())
        return (
            f"a handwritten numpy LeNet ({n_params:,} parameters; NHWC data, HWIO kernels, x @ W + b) "
            "checked layer by layer"
        )

    return DemoExample("the example LeNet", DEFAULT_BUG, build, lambda: VARIANTS, intro)


def _lstm() -> DemoExample:
    from .examples import LSTM_VARIANTS, build_lstm

    def intro(ex: Any) -> str:
        n_params = sum(v.size for v in ex.net.get_params().values())
        return (
            f"a handwritten numpy LSTM language model ({n_params:,} parameters; CS231n's word embedding, "
            "LSTM with Wx (D, 4H) and gates i, f, o, g, temporal affine and masked temporal softmax loss) "
            "checked layer by layer"
        )

    return DemoExample("the example LSTM language model", DEFAULT_LSTM_BUG, build_lstm, lambda: LSTM_VARIANTS, intro)


def _autograd() -> DemoExample:
    from .examples import AUTOGRAD_VARIANTS, build_autograd

    def intro(ex: Any) -> str:
        n_params = sum(p.numel() for p in ex.model.parameters())
        return (
            f"a torch network of custom autograd Functions ({n_params:,} parameters; an im2col Conv2d, "
            "LeakyReLU, Linear, LayerNorm and tanh-GELU, each with its own backward) checked layer by layer "
            "through torch's autograd"
        )

    return DemoExample(
        "the example network of custom autograd Functions",
        DEFAULT_AUTOGRAD_BUG,
        build_autograd,
        lambda: AUTOGRAD_VARIANTS,
        intro,
    )


EXAMPLES: dict[str, Callable[[], DemoExample]] = {"lenet": _lenet, "lstm": _lstm, "autograd": _autograd}


def example(name: str) -> DemoExample:
    """The bundled example ``name`` (a key of :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; valid: {', '.join(EXAMPLES)}")
    return EXAMPLES[name]()


def list_bugs(console: Any, name: str = "lenet") -> None:
    from rich.markup import escape
    from rich.table import Table

    ex = example(name)
    flag = "" if name == "lenet" else f" --example {name}"
    t = Table(title=f"buggy variants of {ex.what} (trigrad demo{flag} --bug NAME)", title_justify="left")
    t.add_column("name", no_wrap=True)
    t.add_column("layer", no_wrap=True)
    t.add_column("side", no_wrap=True)
    t.add_column("the mistake")
    for v in ex.variants().values():
        t.add_row(*(escape(s) for s in (v.name, v.layer, v.side, v.summary)))  # dW[x]: text, not markup
    console.print(t)


def _mistake_source(variant: Any) -> str:
    """The code that makes the mistake: the overriding class, network or loss function."""
    parts = list(getattr(variant, "code", ())) or [cls for _, cls in variant.layers]
    network = getattr(variant, "network", None)
    if network is not None and network.__name__ not in ("LeNet", "LSTMLanguageModel"):
        parts.append(network)
    if getattr(variant, "loss", None) is not None:
        parts.append(variant.loss)
    return "\n".join(inspect.getsource(p) for p in parts)


def run_demo(
    console: Any, *, bug: str | None = None, seed: int = 0, full: bool = False, example_name: str = "lenet"
) -> tuple[int, Any]:
    """Check the correct bundled example ``example_name`` (a key of :data:`EXAMPLES`) and its
    variant ``bug`` (default: the example's own); print both. Returns the exit code (0 when
    the correct network passes and the bug is found where the variant says) and the buggy
    network's report."""
    from rich.markup import escape
    from rich.rule import Rule
    from rich.syntax import Syntax

    from .check import check_network
    from .report import render_terminal

    demo = example(example_name)
    bug = bug or demo.default_bug
    variants = demo.variants()
    if bug not in variants:
        flag = "" if example_name == "lenet" else f" --example {example_name}"
        raise ValueError(f"unknown bug {bug!r}; trigrad demo{flag} --list shows them: {', '.join(variants)}")
    start = time.perf_counter()
    ex = demo.build(seed=seed)
    console.print(f"[bold]trigrad demo[/]: {demo.intro(ex)} against PyTorch, JAX and finite differences.")
    console.print(Rule("1. the correct network"))
    with progress_bar(console) as bar:
        good = check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss, seed=seed, progress=ticker(bar, "correct"))
    render_terminal(good, console, full=full)

    variant = variants[bug]
    console.print(Rule(f"2. the same network with one mistake: {escape(variant.summary)}"))
    console.print(Syntax(_mistake_source(variant), "python", theme="ansi_dark", background_color="default"))
    ex = demo.build(bug, seed=seed)
    with progress_bar(console) as bar:
        bad = check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss, seed=seed, progress=ticker(bar, bug))
    render_terminal(bad, console, full=full)

    found = bad.first_failure == variant.layer and bad.layer(variant.layer).verdict == variant.side
    console.print(Rule())
    if good.ok and found:
        other = "trigrad demo --list" if example_name == "lenet" else f"trigrad demo --example {example_name} --list"
        console.print(
            f"[green]the correct network passes; the mistake is found in [bold]{variant.layer}[/] "
            f"({variant.side})[/] in {time.perf_counter() - start:.1f} s. Other mistakes: {other}"
        )
        return 0, bad
    console.print(
        f"[red]unexpected: correct network ok={good.ok}; mistake expected in {variant.layer} "
        f"({variant.side}), report says {bad.first_failure}[/]"
    )
    return 1, bad


__all__ = [
    "DEFAULT_AUTOGRAD_BUG",
    "DEFAULT_BUG",
    "DEFAULT_LSTM_BUG",
    "EXAMPLES",
    "DemoExample",
    "example",
    "list_bugs",
    "progress_bar",
    "run_demo",
    "ticker",
]
