"""``ClaspModel``: crystal tower + text tower in one shared, L2-normalised space.

Follow a structure (the one path from any input to a vector): :meth:`ClaspModel.encode_structures`
-> per input :func:`~matminer_clasp.model.encoding.build_graph` (``structures.to_structure``, then
:class:`CrystalGraphBuilder` with its split-site and symmetry policies; a failure becomes that
input's error, never the batch's) -> ``torch_geometric`` batch -> :class:`CrystalTower` ->
``F.normalize`` -> numpy, with an :class:`~matminer_clasp.model.encoding.EncodeReport`.
Follow a text: :meth:`ClaspModel.encode_texts` (from
:class:`~matminer_clasp.model.text_model.TextEncodingMixin`, shared with the text-only
:class:`~matminer_clasp.model.text_model.ClaspTextModel`) -> tokenizer -> :class:`TextTower` ->
``F.normalize`` -> numpy. Loading and saving are in :mod:`matminer_clasp.model.io`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any

import numpy as np
import torch
from pymatgen.core import IStructure
from torch import nn
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import EncodingError, InvalidStructureError
from matminer_clasp.graph import INFERENCE_MAX_SITES, CrystalGraphBuilder
from matminer_clasp.graph_pool import auto_workers, pipelined
from matminer_clasp.hub import resolve_text_model
from matminer_clasp.model.crystal import CrystalTower
from matminer_clasp.model.encoding import (
    ERROR_POLICIES,
    EncodeReport,
    build_graph,
    graph_with_notes,
    without_notes,
)
from matminer_clasp.model.ensemble import EnsembleCrystalTower
from matminer_clasp.model.io import load_model, push_model, save_model
from matminer_clasp.model.text import TextTower
from matminer_clasp.model.text_model import (
    TextEncodingMixin,
    build_text_encoder,
    want_progress_bar,
)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ClaspModel(TextEncodingMixin, nn.Module):
    """The CLaSP model: ``encode_structures`` and ``encode_texts`` into one 768-d space.

    Parameters
    ----------
    config
        Architecture; ``ClaspConfig()`` is the official one.
    text_encoder
        A ``transformers`` encoder. When omitted it is built from ``config.text_config``
        (architecture only; weights come from a checkpoint) or, failing that, loaded with
        ``AutoModel.from_pretrained(config.text_model)``.
    tokenizer
        Its tokenizer; loaded from ``config.text_model`` when omitted.

    Examples
    --------
    >>> model = ClaspModel.from_pretrained()                   # doctest: +SKIP
    >>> model.encode_texts(["ferroelectric perovskite"]).shape  # doctest: +SKIP
    (1, 768)
    """

    def __init__(
        self,
        config: ClaspConfig | None = None,
        text_encoder: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        super().__init__()
        self.config = config or ClaspConfig()
        if text_encoder is None:
            text_encoder = build_text_encoder(self.config)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(resolve_text_model(self.config.text_model))
        self.tokenizer = tokenizer
        self.graph_builder = CrystalGraphBuilder(self.config)
        self.crystal_tower = (
            EnsembleCrystalTower(self.config) if self.config.members else CrystalTower(self.config)
        )
        self.text_tower = TextTower(self.config, text_encoder)

    # ------------------------------------------------------------------ tensors in, tensors out
    def embed_graphs(self, batch: Batch, normalize: bool = True) -> torch.Tensor:
        """Crystal embeddings ``(B, dim)`` of a ``torch_geometric`` batch of crystal graphs."""
        out = self.crystal_tower(batch)
        return self._normalize(out) if normalize else out

    def forward(
        self, batch: Batch, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return L2-normalised ``(crystal, text)`` embeddings of paired inputs (for training)."""
        return self.embed_graphs(batch), self.embed_tokens(input_ids, attention_mask)

    # ------------------------------------------------------------------ structures
    def build_graphs(
        self,
        structures: Iterable[Any],
        ignore_errors: bool = False,
        start: int = 0,
        max_sites: int | None = None,
    ) -> list[Data | InvalidStructureError]:
        """Build one graph per input (a structure, its dict, CIF text or file path).

        Every input goes through :func:`matminer_clasp.structures.to_structure` and the graph
        builder's policies. With ``ignore_errors=True`` an input that cannot be converted yields
        its :class:`InvalidStructureError` in place of a graph; otherwise the first one is
        raised, naming its position (counted from ``start``). The notes of the policies (merged
        split sites, symmetry fallbacks, CIF retries) are in ``graph.notes`` when there are any.
        """
        builder = self._builder(max_sites)
        graphs: list[Data | InvalidStructureError] = []
        for i, item in enumerate(structures, start=start):
            built = build_graph(builder, item)
            if isinstance(built, InvalidStructureError) and not ignore_errors:
                raise InvalidStructureError(f"structure {i}: {built}") from built.__cause__
            graphs.append(built)
        return graphs

    def _builder(self, max_sites: int | None) -> CrystalGraphBuilder:
        bound = max_sites if max_sites is not None else max(
            INFERENCE_MAX_SITES, self.config.max_sites
        )
        if self.graph_builder.config is not self.config or self.graph_builder.max_sites != bound:
            self.graph_builder = CrystalGraphBuilder(self.config, max_sites=bound)
        return self.graph_builder

    @torch.inference_mode()
    def encode_graphs(
        self,
        graphs: Sequence[Data],
        batch_size: int = 64,
        device: str | torch.device | None = None,
        normalize_embeddings: bool = True,
    ) -> np.ndarray:
        """Embed prebuilt graphs in batches; returns ``(n, dim)`` float32."""
        device = torch.device(device) if device is not None else self._device()
        was_training = self.training
        if was_training:  # each call walks every module: only when there is something to do
            self.eval()
        if self._device() != device:
            self.to(device)
        try:
            out = np.empty((len(graphs), self.config.embedding_dim), dtype=np.float32)
            for start in range(0, len(graphs), batch_size):
                chunk = [without_notes(g) for g in graphs[start : start + batch_size]]
                batch = Batch.from_data_list(chunk).to(device)
                emb = self.embed_graphs(batch, normalize=normalize_embeddings)
                out[start : start + len(emb)] = emb.float().cpu().numpy()
        finally:
            if was_training:
                self.train()
        return out

    def _encode_rows(
        self,
        built: list[Data | InvalidStructureError],
        rows: list[int],
        out: np.ndarray,
        device: str | torch.device | None,
        normalize: bool,
    ) -> dict[int, EncodingError]:
        """Embed ``built[rows]`` into ``out[rows]`` in one call; if it fails, one by one.

        Returns the rows whose own forward pass failed, so one input that breaks a kernel never
        costs the others their embedding.
        """
        if not rows:
            return {}
        try:
            out[rows] = self.encode_graphs([built[k] for k in rows], len(rows), device, normalize)
            return {}
        except Exception:  # noqa: BLE001 - find the input that breaks the batch
            pass
        failed = {}
        for k in rows:
            try:
                out[k] = self.encode_graphs([built[k]], 1, device, normalize)[0]
            except Exception as exc:  # noqa: BLE001 - reported for this input only
                failed[k] = EncodingError(
                    f"the model failed on this structure: {type(exc).__name__}: {exc}"
                )
                failed[k].__cause__ = exc
        return failed

    def encode_structures(
        self,
        structures: Iterable[Any],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        normalize_embeddings: bool = True,
        errors: str = "raise",
        ids: Sequence[Any] | None = None,
        max_sites: int | None = None,
        return_report: bool = False,
        graph_workers: int | None = None,
    ) -> np.ndarray | tuple[np.ndarray, EncodeReport]:
        """Embed structures, in the style of sentence-transformers ``encode``.

        This is the one loop from inputs to vectors: featurizers, ``screen``,
        ``EmbeddingIndex``, the CLI and Dask all call it.

        Parameters
        ----------
        structures
            pymatgen ``Structure`` objects, their dicts, CIF texts or file paths (any iterable;
            consumed in chunks of ``batch_size``, so a generator over a large corpus keeps memory
            bounded). A single ``Structure`` gives a ``(1, dim)`` array.
        batch_size
            Structures per forward pass. Results do not depend on it (eval mode).
        show_progress_bar
            Show a tqdm bar; default: only for more than four batches of a sized input.
        device
            ``"cpu"``, ``"cuda"``, ...; default: where the model is.
        normalize_embeddings
            Return unit-norm vectors (the CLaSP space); ``False`` gives the raw head output.
        errors
            What to do with an input that cannot be embedded: ``"raise"`` (default) raises
            :class:`InvalidStructureError` naming it; ``"nan"`` gives it a row of NaN; ``"skip"``
            leaves it out. The reason is kept per input in the report either way.
        ids
            Names of the inputs for messages (default: their positions).
        max_sites
            Reject structures with more sites; default ``max(INFERENCE_MAX_SITES,
            config.max_sites)`` = 5,000 (CGCNN's cost grows linearly with the sites).
        return_report
            Also return an :class:`EncodeReport` (errors and notes per input, kept positions).
        graph_workers
            Processes that build the next batches' graphs while this one runs the model (see
            :mod:`matminer_clasp.graph_pool`); ``0`` builds every graph here. Default:
            ``MATMINER_CLASP_GRAPH_WORKERS`` if set, else none for at most two batches and one
            fewer than the available CPUs (at most 4) for more. Results do not depend on it.

        Returns
        -------
        numpy.ndarray or (numpy.ndarray, EncodeReport)
            ``(n, embedding_dim)`` float32 (``(n_kept, dim)`` with ``errors="skip"``).

        Raises
        ------
        InvalidStructureError
            With ``errors="raise"``, for the first input that cannot be embedded (an
            :class:`EncodingError` when the model failed on it); the exception's ``index`` is
            the input's position and ``reason`` the input's own error, as the report holds it.
        """
        if errors not in ERROR_POLICIES:
            raise ValueError(f"errors={errors!r}; expected one of {ERROR_POLICIES}")
        if isinstance(structures, IStructure):  # one structure, not an iterable of its sites
            structures = [structures]
        total = len(structures) if isinstance(structures, Sized) else None
        bar = tqdm(
            total=total,
            desc="Embedding structures",
            unit="structure",
            disable=not want_progress_bar(show_progress_bar, total, batch_size),
        )
        dim = self.config.embedding_dim
        report = EncodeReport(ids=list(ids) if ids is not None else None)
        chunks: list[np.ndarray] = []
        iterator = iter(structures)
        start = 0
        n_workers = auto_workers(total, batch_size) if graph_workers is None else graph_workers
        batches = pipelined(
            iter(lambda: list(itertools.islice(iterator, batch_size)), []),
            self._graph_request(max_sites),
            lambda items: self.build_graphs(items, ignore_errors=True, max_sites=max_sites),
            graph_with_notes,
            n_workers,
        )
        # closing: an early exit (errors="raise") hands the graph workers back at once, not
        # when the generator is garbage-collected
        with bar, contextlib.closing(batches):
            for chunk, built in batches:
                good = [k for k, g in enumerate(built) if not isinstance(g, Exception)]
                out = np.full((len(chunk), dim), np.nan, dtype=np.float32)
                failed = self._encode_rows(built, good, out, device, normalize_embeddings)
                for k, g in enumerate(built):
                    i = start + k
                    if isinstance(g, Exception):
                        report.errors[i] = g
                    elif k in failed:
                        report.errors[i] = failed[k]
                    elif not np.isfinite(out[k]).all():
                        report.errors[i] = EncodingError(
                            "the model produced NaN or infinite values for this structure"
                        )
                    elif "notes" in g:
                        report.notes[i] = list(g.notes)
                    if i in report.errors and errors == "raise":
                        exc = report.errors[i]
                        raised = type(exc)(f"structure {report.name(i)}: {exc}")
                        raised.index, raised.reason = i, exc  # which input, and its own error
                        raise raised from exc.__cause__
                chunks.append(out)
                start += len(chunk)
                bar.update(len(chunk))
        report.n = start
        emb = np.concatenate(chunks) if chunks else np.empty((0, dim), dtype=np.float32)
        if errors == "skip":
            emb = emb[report.kept]
        return (emb, report) if return_report else emb

    def _graph_request(self, max_sites: int | None) -> Callable[[list[Any]], bytes | None]:
        """Chunk -> request bytes for a graph worker (``None``: not picklable, build it here)."""
        builder = self._builder(max_sites)
        config = self.config.to_dict()

        def request(items: list[Any]) -> bytes | None:
            try:
                return pickle.dumps((config, builder.max_sites, items, _cwd()), protocol=5)
            except Exception:  # noqa: BLE001 - e.g. an unpicklable non-structure input
                return None

        return request

    # ------------------------------------------------------------------ misc
    def _device(self) -> torch.device:
        param = next(self.crystal_tower.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return self._device()

    # Loading and saving: one implementation each, in matminer_clasp.model.io, bound here.
    #: Load a fresh (unshared) model: ``None`` = bundled default, a folder, or a Hub id.
    from_pretrained = staticmethod(load_model)
    #: Write ``config.json``, ``model.safetensors`` and tokenizer files to a folder.
    save_pretrained = save_model
    #: Save to a temporary folder and upload it to the Hugging Face Hub.
    push_to_hub = push_model


def _cwd() -> str | None:
    """The working directory graph workers read relative paths in (``None``: it is gone)."""
    try:
        return os.getcwd()
    except OSError:
        return None
