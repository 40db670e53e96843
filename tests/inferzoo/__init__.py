"""An acceptance corpus for inference (issue 15): layers and networks written the way public
from-scratch repositories write them, each with the truth a human would declare with
trigrad's explicit API (:class:`~inferzoo.entry.Entry`), and wrong-kind mutants.

- ``LAYERS``: correct single layers (object style), by family: ``CONV``, ``DENSE`` (fully
  connected), ``NORM`` (normalisations), ``FREE`` (parameter-free: ``ACTIVATIONS``, ``POOLING``);
- ``NETWORKS``: correct networks (``wrap_network`` mappings, or a composite object);
- ``MUTANTS``: forward bugs that make another kind fit better; checked against the intended
  spec they end in ``forward``; ``SHAPE_MUTANTS``: one whose forward changes the output shape
  (the explicit check says ``error``); ``NETWORK_MUTANTS``: the same inside networks (``at``:
  the report entry that fails first).
"""

from __future__ import annotations

from .activations import ACTIVATIONS
from .conv2 import CONV
from .dense import DENSE
from .entry import Entry
from .mutants import MUTANTS, SHAPE_MUTANTS
from .net_mutants import NETWORK_MUTANTS
from .nets import NETS as NETWORKS
from .norm import NORM
from .pooling import POOLING

FREE: list[Entry] = [*ACTIVATIONS, *POOLING]
LAYERS: list[Entry] = [*CONV, *DENSE, *NORM, *FREE]
CORRECT: list[Entry] = [*LAYERS, *NETWORKS]

__all__ = [
    "ACTIVATIONS",
    "CONV",
    "CORRECT",
    "DENSE",
    "FREE",
    "NORM",
    "POOLING",
    "LAYERS",
    "MUTANTS",
    "NETWORK_MUTANTS",
    "NETWORKS",
    "SHAPE_MUTANTS",
    "Entry",
]
