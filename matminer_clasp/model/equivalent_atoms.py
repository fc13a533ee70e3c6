"""Atoms a CGCNN cannot tell apart, so that inference convolves one atom per class.

A CGCNN layer updates an atom from its own features and the (distance, features) pairs of its
neighbour slots. Two atoms with bitwise equal input features whose slots hold the same multiset
of (distance, neighbour class) get equal features after every layer (up to the order of one
12-term float sum), by induction over the layers. Crystals are full of such atoms: symmetry
copies of a site see the same distances, so on AMCSD a batch has 2-3x fewer classes than atoms.

:func:`equivalent_atoms` finds the coarsest such partition by colour refinement (the
Weisfeiler-Lehman test) on integer keys: a class is a (features, sorted slot pairs) key. Keys are
compared through exact integer hashes and the final partition is *verified* entry by entry
against its representatives, so a hash collision can only cost speed, never change a number
(the caller then convolves every atom).
"""

from __future__ import annotations

import torch

#: Refinement rounds before giving up (the partition is stable after 3-7 on AMCSD).
MAX_ROUNDS = 32

_generator = torch.Generator().manual_seed(20261206)
#: Hash weights below 2**16: a key of 92 uint32 words, or of 13 pair keys below 2**44 (4M
#: distinct distances times 4M classes), times these sums to < 2**63: no hash overflows.
_WEIGHTS = torch.randint(1, 2**16, (128,), generator=_generator, dtype=torch.int64)


def equivalent_atoms(
    x: torch.Tensor, nbr_idx: torch.Tensor, dist_idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Classes of atoms whose CGCNN features are equal at every layer.

    Parameters
    ----------
    x
        ``(n, F)`` float input atom features.
    nbr_idx
        ``(n, M)`` neighbour indices.
    dist_idx
        ``(n, M)`` ids of the slots' distances (equal ids = bitwise equal distances).

    Returns
    -------
    (representatives, classes) or None
        ``representatives``: ``(c,)`` one atom index per class; ``classes``: ``(n,)`` the class
        of every atom. ``None`` when the partition could not be verified (then convolve every
        atom; it never happens short of a hash collision).
    """
    n, m = nbr_idx.shape
    if n == 0 or x.dtype != torch.float32 or max(x.shape[1], m + 1) > _WEIGHTS.numel():
        return None  # (float64 / half models convolve every atom)
    weights = _WEIGHTS.to(x.device)
    bits = x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    # elementwise products and sums: integer matrix products do not exist on every device
    start = _classes((bits * weights[: x.shape[1]]).sum(dim=1))
    classes, n_classes = start
    dist = dist_idx.to(torch.int64)
    for _ in range(MAX_ROUNDS):
        pairs = _slot_pairs(dist, classes[nbr_idx], n_classes)
        row = torch.cat([start[0].unsqueeze(1), pairs], dim=1)
        refined, n_refined = _classes((row * weights[: m + 1]).sum(dim=1))
        if n_refined == n_classes:
            break
        classes, n_classes = refined, n_refined
    else:
        return None
    atoms = torch.arange(n, device=x.device)
    representatives = torch.full((n_classes,), n, dtype=torch.int64, device=x.device)
    representatives.scatter_reduce_(0, classes, atoms, reduce="amin")
    rep_of_atom = representatives[classes]
    # the last round's slot pairs were made with these classes: each atom's must be its rep's
    same = torch.equal(x, x[rep_of_atom]) and torch.equal(pairs, pairs[rep_of_atom])
    return (representatives, classes) if same else None


def _classes(keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Class id (0..c-1) of every key, and c."""
    distinct, inverse = torch.unique(keys, return_inverse=True)
    return inverse, int(distinct.numel())


def _slot_pairs(dist: torch.Tensor, neighbour_class: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Each atom's slots as sorted ``dist_id * n_classes + class`` keys (a multiset per row)."""
    return torch.sort(dist * n_classes + neighbour_class, dim=1).values
