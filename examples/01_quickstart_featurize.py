"""Quickstart: CLaSP embeddings of pymatgen structures as matminer features.

What it shows
-------------
1. ``ClaspFeaturizer().featurize_dataframe(df, "structure")`` adds ``clasp_0 ... clasp_767``
   columns, like any matminer featurizer; a bad row becomes NaN with ``ignore_errors=True``.
2. The same space holds texts: the cosine between a structure row and a word says how well the
   word describes the crystal.

Run it::

    python examples/01_quickstart_featurize.py                 # bundled model
    python examples/01_quickstart_featurize.py --model DIR     # any model folder / Hub id
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Molecule, Structure

from matminer_clasp import ClaspFeaturizer, ClaspModel

WORDS = ["rock salt", "semiconductor", "perovskite", "wurtzite", "metal"]


def example_structures() -> dict[str, Structure]:
    """A few textbook crystals, built from their space groups."""
    return {
        "NaCl": Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "Si": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]),
        "ZnO": Structure.from_spacegroup(
            "P6_3mc", Lattice.hexagonal(3.25, 5.207), ["Zn", "O"],
            [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
        ),
        "SrTiO3": Structure.from_spacegroup(
            "Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
        ),
        "Cu": Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: bundled)")
    parser.add_argument("--fast", action="store_true",
                        help="quick run (also MATMINER_CLASP_EXAMPLE_FAST=1); same steps here")
    args = parser.parse_args(argv)

    # 1. a DataFrame with a structure column; the last row is a molecule, not a crystal
    crystals = example_structures()
    df = pd.DataFrame({"name": list(crystals), "structure": list(crystals.values())})
    water = Molecule(["O", "H", "H"], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    df.loc[len(df)] = ["water (not a crystal)", water]

    # 2. featurize like any matminer featurizer; the model is loaded once, on first use
    featurizer = ClaspFeaturizer(args.model, device="cpu")
    df = featurizer.featurize_dataframe(
        df, "structure", ignore_errors=True, return_errors=True, pbar=False
    )
    labels = featurizer.feature_labels()
    print(f"{len(labels)} features per structure: {labels[0]} ... {labels[-1]}")
    emb = df[labels].to_numpy()
    bad = df["ClaspFeaturizer Exceptions"].notna()
    for name, error in zip(df["name"][bad], df["ClaspFeaturizer Exceptions"][bad]):
        print(f"NaN row for {name}: {error.strip().splitlines()[-1]}")

    # 3. texts live in the same space: embed a few words with the same model
    model: ClaspModel = featurizer.get_model()
    words = model.encode_texts(WORDS)                      # (n_words, dim), unit rows
    good = ~bad.to_numpy()
    cosine = emb[good] @ words.T                           # rows are unit vectors: cosines
    table = pd.DataFrame(cosine, index=df["name"][good], columns=WORDS).round(3)
    print("\ncosine similarity (structure x word):")
    print(table.to_string())
    best = table.idxmax(axis=1)
    print("\nbest word per structure:", ", ".join(f"{k}: {v}" for k, v in best.items()))
    assert np.allclose(np.linalg.norm(emb[good], axis=1), 1.0, atol=1e-4)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
