"""What :meth:`ClaspModel.encode_structures` hands back besides vectors, and its per-input steps.

:class:`EncodeReport` records, per input position, why an input was not embedded and which
repairs or fallbacks the embedded ones needed; :func:`build_graph` turns one input into a graph
(through :func:`matminer_clasp.structures.to_structure` and the graph builder's policies) or
into the reason why not. (Texts are checked by
:func:`matminer_clasp.model.text_model.check_text`.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch_geometric.data import Data

from matminer_clasp.errors import EncodingError, InvalidStructureError
from matminer_clasp.graph import CrystalGraphBuilder, graph_from_arrays
from matminer_clasp.graph_arrays import GraphArrays, as_invalid
from matminer_clasp.structures.read import to_structure

ERROR_POLICIES = ("raise", "nan", "skip")


@dataclass
class EncodeReport:
    """What :meth:`ClaspModel.encode_structures` did with each input.

    Attributes
    ----------
    n
        Number of inputs seen.
    errors
        Position -> why each input that was not embedded failed: an
        :class:`InvalidStructureError` (the input) or an :class:`EncodingError` (the model).
    notes
        Position -> notes of the inputs that were embedded after a repair or fallback (merged
        split sites, a symmetry fallback, a CIF read with wider tolerances).
    ids
        The names given to ``encode_structures`` (``None``: positions are the names).
    """

    n: int = 0
    errors: dict[int, InvalidStructureError | EncodingError] = field(default_factory=dict)
    notes: dict[int, list[str]] = field(default_factory=dict)
    ids: list[Any] | None = None

    @property
    def kept(self) -> np.ndarray:
        """Positions of the embedded inputs, in input order."""
        bad = np.zeros(self.n, dtype=bool)
        bad[list(self.errors)] = True
        return np.flatnonzero(~bad)

    def name(self, i: int) -> str:
        """How messages name input ``i``: its id (quoted) or its position."""
        return repr(self.ids[i]) if self.ids is not None and i < len(self.ids) else str(i)

    def skipped(self) -> list[tuple[Any, str]]:
        """``[(id or position, reason), ...]`` of the inputs that were not embedded."""
        return [
            (self.ids[i] if self.ids is not None and i < len(self.ids) else i, str(exc))
            for i, exc in sorted(self.errors.items())
        ]


def build_graph(builder: CrystalGraphBuilder, item: Any) -> Data | InvalidStructureError:
    """Input -> graph with its notes, or the reason why not (never raises).

    :func:`~matminer_clasp.graph_arrays.build_arrays_or_error` is its twin for graph-building
    worker processes (same conversion and error wording; :func:`graph_with_notes` finishes it).
    """
    try:
        structure, notes = to_structure(item)
        graph, more = builder.build(structure)
    except Exception as exc:  # one odd input never costs the others
        return as_invalid(exc)
    if notes or more:
        graph.notes = notes + more
    return graph


def graph_with_notes(built: tuple[GraphArrays, list[str]] | InvalidStructureError) -> Any:
    """A worker's :func:`~matminer_clasp.graph_arrays.build_arrays_or_error` result as a graph."""
    if isinstance(built, Exception):
        return built
    arrays, notes = built
    graph = graph_from_arrays(arrays)
    if notes:
        graph.notes = notes
    return graph


def without_notes(graph: Data) -> Data:
    """``graph`` without its ``notes`` (strings cannot be batched); a shallow copy if needed."""
    if "notes" not in graph:
        return graph
    graph = copy.copy(graph)
    del graph.notes
    return graph
