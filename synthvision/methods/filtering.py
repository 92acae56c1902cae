"""CLIP filter (CF) math: numpy only, no model, no I/O.

An image of class c passes CF when CLIP's zero-shot probability of c is at least the threshold; the
paper uses 1/N for N classes (A.7.1), i.e. "at least as likely as a uniform guess".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthvision.core.hashing import derive_seed

CLIP_FILTER_REASON = "clip_low_confidence"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def filter_threshold(num_classes: int, threshold: float | None) -> float:
    return 1.0 / num_classes if threshold is None else threshold


def zero_shot_logits(embeddings: np.ndarray, class_embeddings: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP's zero-shot logits: scaled cosine similarity of each image to each class embedding."""
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return logit_scale * (embeddings / np.maximum(norms, 1e-12)) @ class_embeddings.T


def clip_filter(probs: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of the samples that pass CF: probability of their own label >= threshold."""
    return probs[np.arange(len(labels)), labels] >= threshold


@dataclass(frozen=True)
class ZeroShotHead:
    """CLIP's zero-shot classifier: class embeddings (C x D, unit norm) and CLIP's logit scale."""

    class_embeddings: np.ndarray
    logit_scale: float

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return zero_shot_logits(embeddings, self.class_embeddings, self.logit_scale)


def per_class_budget(labels: np.ndarray, probs: np.ndarray, passed: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """CF's output as the paper's code makes it: per class, `budget` images drawn at random (seeded)
    among those passing, or, when fewer pass, the `budget` most confident (`probs`: CLIP's probability
    of each image's label), failing ones included; a class with fewer images keeps them all.
    Returns the mask of kept images."""
    keep = np.zeros(len(labels), bool)
    for class_id in np.unique(labels):
        members = np.flatnonzero(labels == class_id)
        passing = members[passed[members]]
        if len(passing) >= budget:
            rng = np.random.default_rng(derive_seed(seed, "filter.per_class", int(class_id)))
            chosen = rng.choice(passing, size=budget, replace=False)
        else:
            chosen = members[np.argsort(-probs[members], kind="stable")[:budget]]
        keep[chosen] = True
    return keep


def first_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """The mask of each class's first `count` rows (in the given order): a smaller data set cut from
    the same generation, for curves of accuracy against data amount without generating again."""
    keep = np.zeros(len(labels), bool)
    for class_id in np.unique(labels):
        keep[np.flatnonzero(labels == class_id)[:count]] = True
    return keep
