"""What every peer answers: :class:`PeerResult` (verdict, time, calls, coverage), the
peers' names in table order, and the one-line wording of an exception a peer raised."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PEERS = ("gradcheck", "gradcheck_fast", "jax_check_grads", "cs231n", "trigrad")


@dataclass
class PeerResult:
    """One peer's answer on one subject.

    caught:   True when the peer reported a problem (a failed comparison or an error raised
              by the user's code), False when it passed.
    detail:   the peer's message (first line), or what trigrad blamed.
    seconds:  wall time of the run; ``calls``: :class:`CallCounts` of the run.
    coords / coords_total: coordinates the run covered, of all (exhaustive peers).
    outputs / outputs_total: output elements slow gradcheck differentiated, of all.
    extrapolated: the estimated full-run seconds when only part was run (else None).
    verdicts: trigrad only: ``{entry: verdict}`` of the report; ``inconclusive``: whether
              one of them is ``inconclusive``.
    normwise_caught: CS231n only: the verdict had the relative error been norm-wise
              (max|a - b| / max(|a| + |b|)) rather than CS231n's elementwise one.
    errors:   CS231n only: CS231n's rel_error per tensor ("x" and each parameter), what its
              notebooks print (a person reads which tensor failed off them).
    memory_mib: peak RSS growth during the run, when measured (set by the caller).
    """

    peer: str
    caught: bool
    detail: str = ""
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    coords: int | None = None
    coords_total: int | None = None
    outputs: int | None = None
    outputs_total: int | None = None
    extrapolated: float | None = None
    verdicts: dict[str, str] | None = None
    inconclusive: bool = False
    normwise_caught: bool | None = None
    errors: dict[str, float] | None = None
    memory_mib: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
