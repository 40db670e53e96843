"""``trigrad demo``: the bundled numpy LeNet checked correct, then with one mistake.

What a newcomer should see in a minute: a handwritten network in TensorFlow habits (NHWC
data, HWIO kernels, ``x @ W + b``) ported into PyTorch and JAX and checked layer by layer;
the correct code passes; one realistic mistake is pinned to its layer and side with a
diagnosis, next to the code that makes it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

DEFAULT_BUG = "conv2-dx-kernel-not-rotated"


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


def list_bugs(console: Any) -> None:
    from rich.table import Table

    from .examples import VARIANTS

    t = Table(title="buggy variants of the example LeNet (trigrad demo --bug NAME)", title_justify="left")
    t.add_column("name", no_wrap=True)
    t.add_column("layer", no_wrap=True)
    t.add_column("side", no_wrap=True)
    t.add_column("the mistake")
    for v in VARIANTS.values():
        t.add_row(v.name, v.layer, v.side, v.summary)
    console.print(t)


def _mistake_source(variant: Any) -> str:
    """The code that makes the mistake: the overriding class, network or loss function."""
    parts = [cls for _, cls in variant.layers]
    if variant.network.__name__ != "LeNet":
        parts.append(variant.network)
    if variant.loss is not None:
        parts.append(variant.loss)
    return "\n".join(inspect.getsource(p) for p in parts)


def run_demo(console: Any, *, bug: str = DEFAULT_BUG, seed: int = 0, full: bool = False) -> tuple[int, Any]:
    """Check the correct example and the variant ``bug``; print both. Returns the exit code
    (0 when the correct network passes and the bug is found where the variant says) and
    the buggy network's report."""
    from rich.rule import Rule
    from rich.syntax import Syntax

    from .check import check_network
    from .examples import VARIANTS, build
    from .report import render_terminal

    if bug not in VARIANTS:
        raise ValueError(f"unknown bug {bug!r}; trigrad demo --list shows them: {', '.join(VARIANTS)}")
    start = time.perf_counter()
    ex = build(seed=seed)
    n_params = sum(v.size for v in ex.net.get_params().values())
    console.print(
        f"[bold]trigrad demo[/]: a handwritten numpy LeNet ({n_params:,} parameters; NHWC data, HWIO "
        f"kernels, x @ W + b) checked layer by layer against PyTorch, JAX and finite differences."
    )
    console.print(Rule("1. the correct network"))
    with progress_bar(console) as bar:
        good = check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss, seed=seed, progress=ticker(bar, "correct"))
    render_terminal(good, console, full=full)

    variant = VARIANTS[bug]
    console.print(Rule(f"2. the same network with one mistake: {variant.summary}"))
    console.print(Syntax(_mistake_source(variant), "python", theme="ansi_dark", background_color="default"))
    ex = build(bug, seed=seed)
    with progress_bar(console) as bar:
        bad = check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss, seed=seed, progress=ticker(bar, bug))
    render_terminal(bad, console, full=full)

    found = bad.first_failure == variant.layer and bad.layer(variant.layer).verdict == variant.side
    console.print(Rule())
    if good.ok and found:
        console.print(
            f"[green]the correct network passes; the mistake is found in [bold]{variant.layer}[/] "
            f"({variant.side})[/] in {time.perf_counter() - start:.1f} s. Other mistakes: trigrad demo --list"
        )
        return 0, bad
    console.print(
        f"[red]unexpected: correct network ok={good.ok}; mistake expected in {variant.layer} "
        f"({variant.side}), report says {bad.first_failure}[/]"
    )
    return 1, bad


__all__ = ["DEFAULT_BUG", "list_bugs", "progress_bar", "run_demo", "ticker"]
