"""How diverse, how duplicated and how close to real a set of images is, measured on CLIP features.

The paper's finding is that synthetic data lacks diversity (LE and more prompts help; from scratch it
needs several times more images than real data to match it). These measures put a number on that,
per class, from the L2-normalised features the score stage already stored (no image is encoded twice):

- `vendi_score`: the effective number of distinct images (Friedman & Dieng, 2023): exp of the entropy
  of the eigenvalues of the cosine-similarity matrix / n. n identical images score 1, n orthogonal
  ones score n. Computed from the d x d feature covariance, so its cost is O(n d^2), not O(n^2).
- `mean_pairwise_distance`: 1 - the mean cosine similarity over distinct pairs, in O(n d).
- `near_duplicates`: greedy, order-stable grouping at a cosine threshold (an image is a duplicate if it
  is that close to an earlier kept one), in blocks, with memory bounded by the kept images.
- `frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets (FID's
  formula, here on CLIP features).
"""

from __future__ import annotations

import numpy as np

BLOCK = 4096  # rows compared at once by `near_duplicates`


def unit_rows(features: np.ndarray) -> np.ndarray:
    """The rows scaled to unit length (float64): CLIP compares directions."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-d array (images x dims), not shape {features.shape}")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def vendi_score(features: np.ndarray) -> float:
    """exp(-sum(l log l)) over the eigenvalues l of K/n, K the cosine similarities of the n rows."""
    x = unit_rows(features)
    n = len(x)
    if n == 0:
        return 0.0
    eigenvalues = np.linalg.eigvalsh(x.T @ x / n)  # the nonzero eigenvalues of X X^T / n, from d x d
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))


def mean_pairwise_distance(features: np.ndarray) -> float:
    """1 - mean cosine similarity over the n(n-1) ordered pairs of distinct rows (0 for n < 2)."""
    x = unit_rows(features)
    n = len(x)
    if n < 2:
        return 0.0
    total = x.sum(axis=0)
    similarity = (total @ total - n) / (n * (n - 1))  # the sum over all pairs less the diagonal's n ones
    return float(1.0 - similarity)


def near_duplicates(features: np.ndarray, threshold: float, block: int = BLOCK) -> np.ndarray:
    """For each row, the index of the earlier kept row it duplicates (cosine >= threshold), or -1 for a
    row that is kept. Greedy in row order: the first of each group is kept, so the result depends
    only on the order, not on `block`."""
    x = unit_rows(features).astype(np.float32)
    duplicate_of = np.full(len(x), -1, dtype=np.int64)
    kept: list[int] = []
    for start in range(0, len(x), block):
        rows = x[start : start + block]
        against_kept = rows @ x[kept].T if kept else np.zeros((len(rows), 0), np.float32)
        within = rows @ rows.T
        kept_here = np.zeros(len(rows), dtype=bool)
        for i in range(len(rows)):
            close = np.flatnonzero(against_kept[i] >= threshold)
            if close.size:
                duplicate_of[start + i] = kept[close[0]]
                continue
            earlier = np.flatnonzero(kept_here[:i] & (within[i, :i] >= threshold))
            if earlier.size:
                duplicate_of[start + i] = start + earlier[0]
                continue
            kept_here[i] = True
        kept += [start + i for i in np.flatnonzero(kept_here)]
    return duplicate_of


def near_duplicate_rate(features: np.ndarray, threshold: float) -> float:
    """The fraction of rows that duplicate an earlier kept one (what a dedup filter would drop)."""
    return float((near_duplicates(features, threshold) >= 0).mean()) if len(features) else 0.0


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for Gaussians fitted to the rows of a and b.
    The trace of the matrix square root is taken as that of (S_a^(1/2) S_b S_a^(1/2))^(1/2), which is
    symmetric: eigenvalues, no scipy."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 rows in each set")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def drop_near_duplicates(features: np.ndarray, labels: np.ndarray, keep: np.ndarray, threshold: float) -> np.ndarray:
    """`keep` less, within each class, every kept row that nearly duplicates an earlier kept row of its
    class (`near_duplicates`): one class's rows in memory at a time, however many shards they came from."""
    keep = keep.copy()
    for label in np.unique(labels[keep]):
        rows = np.flatnonzero(keep & (labels == label))
        keep[rows[near_duplicates(features[rows], threshold) >= 0]] = False
    return keep
