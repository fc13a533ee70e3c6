"""``ClaspModel``: crystal tower + text tower in one shared, L2-normalised space.

Follow a structure: :meth:`ClaspModel.encode_structures` -> :class:`CrystalGraphBuilder` (one graph
per structure) -> ``torch_geometric`` batch -> :class:`CrystalTower` -> ``F.normalize`` -> numpy.
Follow a text: :meth:`ClaspModel.encode_texts` -> tokenizer -> :class:`TextTower` ->
``F.normalize`` -> numpy. Loading and saving are in :mod:`matminer_clasp.model.io`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence, Sized
from typing import Any

import numpy as np
import torch
from pymatgen.core import IStructure
from torch import nn
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import InvalidStructureError, InvalidTextError
from matminer_clasp.graph import CrystalGraphBuilder
from matminer_clasp.hub import resolve_text_model
from matminer_clasp.model.crystal import CrystalTower
from matminer_clasp.model.ensemble import EnsembleCrystalTower
from matminer_clasp.model.io import load_model, push_model, save_model
from matminer_clasp.model.text import TextTower


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ClaspModel(nn.Module):
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
            text_encoder = _build_text_encoder(self.config)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(resolve_text_model(self.config.text_model))
        self.tokenizer = tokenizer
        self.graph_builder = CrystalGraphBuilder(self.config)
        self.crystal_tower = (
            EnsembleCrystalTower(self.config) if self.config.members else CrystalTower(self.config)
        )
        self.text_tower = TextTower(self.config, text_encoder)

    # ------------------------------------------------------------------ tensors in, tensors out
    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, p=2, dim=1, eps=self.config.normalize_eps)

    def embed_graphs(self, batch: Batch, normalize: bool = True) -> torch.Tensor:
        """Crystal embeddings ``(B, dim)`` of a ``torch_geometric`` batch of crystal graphs."""
        out = self.crystal_tower(batch)
        return self._normalize(out) if normalize else out

    def embed_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """Text embeddings ``(B, dim)`` of tokenised texts."""
        out = self.text_tower(input_ids, attention_mask)
        return self._normalize(out) if normalize else out

    def embed_text_features(self, features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings from pooled encoder features (as cached for a frozen text encoder)."""
        out = self.text_tower.head(features)
        return self._normalize(out) if normalize else out

    def forward(
        self, batch: Batch, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return L2-normalised ``(crystal, text)`` embeddings of paired inputs (for training)."""
        return self.embed_graphs(batch), self.embed_tokens(input_ids, attention_mask)

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, Any]:
        """Tokenise texts the way the model expects (padding to the longest, truncation)."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length or self.config.max_length,
            return_tensors="pt",
        )

    # ------------------------------------------------------------------ structures
    def build_graphs(
        self, structures: Iterable[Any], ignore_errors: bool = False, start: int = 0
    ) -> list[Data | InvalidStructureError]:
        """Build one graph per structure.

        With ``ignore_errors=True`` a structure that cannot be converted yields its
        :class:`InvalidStructureError` in place of a graph; otherwise the first one is raised,
        naming its position in the input (counted from ``start``, for inputs seen in chunks).
        An unexpected failure inside pymatgen or spglib is reported the same way (as an
        :class:`InvalidStructureError` whose ``__cause__`` is the original exception), so one odd
        structure never costs the others.
        """
        graphs: list[Data | InvalidStructureError] = []
        for i, structure in enumerate(structures, start=start):
            try:
                graphs.append(self.graph_builder(structure))
            except Exception as exc:
                error = exc if isinstance(exc, InvalidStructureError) else InvalidStructureError(
                    f"building the crystal graph failed: {type(exc).__name__}: {exc}"
                )
                if not ignore_errors:
                    raise InvalidStructureError(f"structure {i}: {error}") from exc
                if error is not exc:
                    error.__cause__ = exc
                graphs.append(error)
        return graphs

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
        self.eval().to(device)
        try:
            out = np.empty((len(graphs), self.config.embedding_dim), dtype=np.float32)
            for start in range(0, len(graphs), batch_size):
                batch = Batch.from_data_list(list(graphs[start : start + batch_size])).to(device)
                emb = self.embed_graphs(batch, normalize=normalize_embeddings)
                out[start : start + len(emb)] = emb.float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def encode_structures(
        self,
        structures: Iterable[Any],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        normalize_embeddings: bool = True,
    ) -> np.ndarray:
        """Embed pymatgen structures, in the style of sentence-transformers ``encode``.

        Parameters
        ----------
        structures
            pymatgen ``Structure`` objects (any iterable; consumed in chunks of ``batch_size``, so
            a generator over a large corpus keeps memory bounded). A single ``Structure`` gives a
            ``(1, dim)`` array.
        batch_size
            Structures per forward pass. Results do not depend on it (eval mode).
        show_progress_bar
            Show a tqdm bar; default: only for more than one batch when logging is interactive.
        device
            ``"cpu"``, ``"cuda"``, ...; default: where the model is.
        normalize_embeddings
            Return unit-norm vectors (the CLaSP space); ``False`` gives the raw head output.

        Returns
        -------
        numpy.ndarray
            ``(n, embedding_dim)`` float32.

        Raises
        ------
        InvalidStructureError
            For the first structure that cannot become a graph, naming its index.
        """
        if isinstance(structures, IStructure):  # one structure, not an iterable of its sites
            structures = [structures]
        total = len(structures) if isinstance(structures, Sized) else None
        bar = tqdm(
            total=total,
            desc="Embedding structures",
            unit="structure",
            disable=not _want_bar(show_progress_bar, total, batch_size),
        )
        chunks = []
        iterator = iter(structures)
        start = 0
        with bar:
            while chunk := list(itertools.islice(iterator, batch_size)):
                graphs = self.build_graphs(chunk, start=start)
                chunks.append(self.encode_graphs(graphs, len(graphs), device, normalize_embeddings))
                start += len(chunk)
                bar.update(len(chunk))
        if not chunks:
            return np.empty((0, self.config.embedding_dim), dtype=np.float32)
        return np.concatenate(chunks)

    # ------------------------------------------------------------------ texts
    @torch.inference_mode()
    def encode_texts(
        self,
        texts: str | Sequence[str],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        normalize_embeddings: bool = True,
    ) -> np.ndarray:
        """Embed texts (sorted by length internally, returned in input order).

        Parameters mirror :meth:`encode_structures`; a single string gives a ``(1, dim)`` array.

        Raises
        ------
        InvalidTextError
            For a non-string or an empty / whitespace-only text, naming its index.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, text in enumerate(texts):
            check_text(text, i)
        device = torch.device(device) if device is not None else self._device()
        was_training = self.training
        self.eval().to(device)
        out = np.empty((len(texts), self.config.embedding_dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        bar = tqdm(
            total=len(texts),
            desc="Embedding texts",
            unit="text",
            disable=not _want_bar(show_progress_bar, len(texts), batch_size),
        )
        try:
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                tokens = self.tokenize([texts[i] for i in idx]).to(device)
                emb = self.embed_tokens(
                    tokens["input_ids"], tokens["attention_mask"], normalize_embeddings
                )
                out[idx] = emb.float().cpu().numpy()
                bar.update(len(idx))
        finally:
            bar.close()
            self.train(was_training)
        return out

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


def check_text(text: Any, index: int | None = None) -> None:
    """Raise :class:`InvalidTextError` unless ``text`` is a non-blank string."""
    where = "" if index is None else f"text {index}: "
    if not isinstance(text, str):
        raise InvalidTextError(f"{where}expected a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidTextError(f"{where}the text is empty or whitespace only")


def _build_text_encoder(config: ClaspConfig) -> PreTrainedModel:
    if config.text_config is not None and config.text_weights == "checkpoint":
        from transformers import AutoConfig

        cfg = dict(config.text_config)
        text_cfg = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        return AutoModel.from_config(text_cfg)
    return AutoModel.from_pretrained(resolve_text_model(config.text_model))


def _want_bar(flag: bool | None, n: int | None, batch_size: int) -> bool:
    if flag is not None:
        return flag
    return n is None or n > 4 * batch_size
