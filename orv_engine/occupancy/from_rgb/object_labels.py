"""Objects stage of 4D occupancy from RGB video (supplementary 10.1.1): which object classes
does each episode show, and what is the dataset's label set?

The paper asks a VLM, on keyframes of every episode, ``List the main object classes in the
image, with only one word for each class:``; all extracted names (with repeats) are embedded
with all-MiniLM-L6-v2 and K-means (K = 51) clusters them into the dataset-level label set
(:func:`orv_engine.occupancy.labels.build_label_set`). Each episode's label-set names are
then the text prompts of the segmenter.

- :func:`keyframe_indices`: which frames are asked about (evenly spread, first and last).
- :func:`parse_object_list`: a tolerant parser of the free-form answer (numbered / bulleted
  lists, commas, "and", prose lead-ins such as "The main objects are").
- :class:`ObjectLister`: any :class:`filtering.backends.VLMBackend` (vLLM offline, an
  OpenAI-compatible server, transformers; build one with
  ``filtering.backends.make_backend(FilterConfig(...))``). One request per keyframe, a
  single frame each; all episodes' requests go to one ``backend.generate`` call so the
  backend batches them; failed requests are retried; one bad episode never stops the rest:
  it is recorded with its ``error``.
- :func:`dataset_label_set` and :func:`episode_class_names`: the label set, and an
  episode's classes in it.

Why a hand-written parser: VLMs do not follow "one word for each class" reliably (Qwen2.5-VL
answers numbered lists, markdown, "a pot and a towel", or a sentence), and a label that
survives as "the main objects are a robot" would become a class of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from filtering.backends.base import VLMBackend, VLMRequest, VLMResponse, describe
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.labels import DEFAULT_NUM_CLUSTERS, LabelSet, build_label_set, normalise_label

OBJECT_LIST_PROMPT = "List the main object classes in the image, with only one word for each class:"

# Items made only of these words are dropped: they describe the picture or the answer, not
# an object one could segment. Scene surfaces (table, wall, floor, counter...) and "robot",
# "arm", "gripper" are objects here and are kept.
NON_OBJECT_WORDS = frozenset({
    # the picture itself
    "image", "images", "picture", "pictures", "photo", "photos", "photograph", "scene", "scenes",
    "view", "views", "frame", "frames", "shot", "background", "backgrounds", "foreground",
    "setting", "environment", "area", "space", "surroundings", "camera",
    # the answer's own words
    "main", "object", "objects", "class", "classes", "item", "items", "thing", "things",
    "category", "categories", "list", "answer", "word", "words", "other", "others", "various",
    "etc", "none", "nothing", "unknown", "n", "na", "misc", "miscellaneous", "here",
    # function words that may be left alone after splitting
    "a", "an", "the", "and", "or", "of", "with", "some", "is", "are", "in", "on", "it", "this",
    "that", "these", "those", "there", "its", "their", "also", "each", "one",
})
# an item longer than this (in words) is a sentence fragment, not a class name
MAX_WORDS_PER_NAME = 3

# an item starting with one of these says that there is nothing ("nothing in particular")
_NEGATIONS = frozenset({"no", "not", "nothing", "none", "without"})
_LEADING_WORDS = ("a", "an", "the", "and", "some", "two", "three", "several", "many", "few")
_SPLIT = re.compile(r"[\n,;|&]+|\band\b|\bor\b")
_MARKER = re.compile(r"^\s*(?:\d+\s*[.):\]-]|[-*+\u2022\u00b7\u2013\u2014>#]+)\s*")
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]")
# prose lead-ins: "The main objects are a robot", "The image shows a pot", "Objects: pot"
_LEAD_IN = re.compile(r"^.*?\b(?:are|is|include|includes|including|shows?|contains?|depicts?|features?|see)\b\s+")


def keyframe_indices(num_frames: int, count: int = 3) -> list[int]:
    """``count`` frame indices spread evenly over ``num_frames`` frames, first and last
    included (``count == 1``: the first frame), distinct and sorted; all frames when the
    episode is shorter than ``count``."""
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise OccupancyInputError(f"num_frames: must be a positive integer, got {num_frames!r}")
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise OccupancyInputError(f"count: must be a positive integer, got {count!r}")
    num_frames, count = int(num_frames), int(count)
    if count >= num_frames:
        return list(range(num_frames))
    # step >= 1, and floor(x + 0.5) is strictly monotone over steps >= 1: no duplicates
    spots = np.floor(np.linspace(0, num_frames - 1, count) + 0.5).astype(np.int64)
    return sorted({int(i) for i in spots})


def _clean_part(part: str) -> str:
    part = _LEAD_IN.sub("", _MARKER.sub("", part))
    part = re.sub(r"[^a-z0-9' -]+", " ", part)  # punctuation and markdown
    words = [w.strip("'-") for w in part.split()]
    words = [w for w in words if w and not w.isdigit()]
    while words and words[0] in _LEADING_WORDS:
        words.pop(0)
    return normalise_label(" ".join(words))


def _is_non_object(name: str) -> bool:
    return all(w in NON_OBJECT_WORDS for w in name.split())


def _clean_item(item: str) -> str:
    if ":" not in item:
        return _clean_part(item)
    # "Robot: the arm" names the robot; "Objects: pot" and "The image contains: pot" the pot
    head, tail = item.split(":", 1)
    head = _clean_part(head)
    return _clean_part(tail) if _is_non_object(head) else head


def parse_object_list(text: str) -> list[str]:
    """Object names in a VLM's answer, normalised, distinct, in the answer's order.

    Splits on newlines, commas, semicolons, "and"/"or"/"&"; removes list markers ("1.",
    "-", "*", bullets), markdown, parenthesised remarks, prose lead-ins ("The main objects
    are ..."), punctuation and leading articles/quantifiers; drops empties, duplicates, items
    of more than :data:`MAX_WORDS_PER_NAME` words, items without a letter and items made only
    of :data:`NON_OBJECT_WORDS` (e.g. "image", "background", "objects") and items starting
    with a negation ("nothing in particular", "no objects").
    """
    if not text:
        return []
    text = _PAREN.sub(" ", str(text).lower())
    names: list[str] = []
    for item in _SPLIT.split(text):
        name = _clean_item(item)
        words = name.split()
        if not words or len(words) > MAX_WORDS_PER_NAME or not re.search(r"[a-z]", name):
            continue
        if _is_non_object(name) or words[0] in _NEGATIONS or name in names:
            continue
        names.append(name)
    return names


@dataclass
class EpisodeObjects:
    episode_id: str
    names: list[str]  # distinct normalised names over the keyframes
    error: str | None = None  # why nothing usable came back; None if ok
    answers: list[str | None] = field(default_factory=list)  # the raw answer per keyframe (None: failed)


def _truncated_tail(response: VLMResponse) -> bool:
    """The answer hit the token limit in the middle of a name (no separator at its end)."""
    text = (response.text or "").rstrip()
    return response.finish_reason == "length" and bool(text) and text[-1].isalnum()


class ObjectLister:
    """Asks a VLM backend for the objects on each episode's keyframes."""

    def __init__(self, backend: VLMBackend, keyframes: int = 3, max_tokens: int = 64, retries: int = 1):
        if keyframes < 1 or max_tokens < 1 or retries < 0:
            raise OccupancyInputError(f"keyframes >= 1, max_tokens >= 1, retries >= 0: got {keyframes}, "
                                      f"{max_tokens}, {retries}")
        self.backend = backend
        self.keyframes = int(keyframes)
        self.max_tokens = int(max_tokens)
        self.retries = int(retries)

    def _generate(self, requests: list[VLMRequest]) -> list[VLMResponse]:
        try:  # generate() never raises by contract; a custom backend still might
            responses = list(self.backend.generate(requests))
        except Exception as error:  # noqa: BLE001
            return [VLMResponse(None, describe(error)) for _ in requests]
        if len(responses) != len(requests):
            return [VLMResponse(None, f"backend returned {len(responses)} answers for {len(requests)} requests")
                    for _ in requests]
        return responses

    def list_objects(self, episodes: dict[str, np.ndarray]) -> dict[str, EpisodeObjects]:
        """``episode_id -> (T, H, W, 3) uint8 frames`` to ``episode_id -> EpisodeObjects``."""
        results: dict[str, EpisodeObjects] = {}
        requests: list[VLMRequest] = []
        owners: list[str] = []
        for episode_id, frames in episodes.items():
            episode_id = str(episode_id)
            frames = np.asarray(frames) if frames is not None else None
            if frames is None or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1 \
                    or frames.dtype != np.uint8:
                shape = None if frames is None else (frames.shape, str(frames.dtype))
                results[episode_id] = EpisodeObjects(episode_id, [], f"frames: expected (T, H, W, 3) uint8 with "
                                                                     f"T >= 1, got {shape}")
                continue
            for k in keyframe_indices(frames.shape[0], self.keyframes):
                requests.append(VLMRequest(key=f"{episode_id}/objects/{k}", prompt=OBJECT_LIST_PROMPT,
                                           frames=np.ascontiguousarray(frames[k:k + 1]), max_tokens=self.max_tokens,
                                           temperature=0.0))
                owners.append(episode_id)
        responses = self._generate(requests)
        for _ in range(self.retries):  # every failed request again, still in one batch
            failed = [i for i, r in enumerate(responses) if not r.ok]
            if not failed:
                break
            for i, response in zip(failed, self._generate([requests[i] for i in failed])):
                responses[i] = response
        by_episode: dict[str, list[VLMResponse]] = {}
        for owner, response in zip(owners, responses):
            by_episode.setdefault(owner, []).append(response)
        for episode_id in (str(e) for e in episodes):
            if episode_id not in results:
                results[episode_id] = self._summarise(episode_id, by_episode.get(episode_id, []))
        return {str(e): results[str(e)] for e in episodes}

    @staticmethod
    def _summarise(episode_id: str, responses: list[VLMResponse]) -> EpisodeObjects:
        names: list[str] = []
        for response in responses:
            if not response.ok:
                continue
            found = parse_object_list(response.text)
            if _truncated_tail(response) and len(found) > 1:
                found = found[:-1]  # a name cut by the token limit
            names.extend(n for n in found if n not in names)
        answers = [r.text if r.ok else None for r in responses]
        error = None
        if not names:
            texts = [r.text for r in responses if r.ok]
            if texts:
                error = f"no usable object names in the answer: {texts[0][:200]!r}"
            else:
                first = next((r.error for r in responses if r.error), "no answer")
                error = f"VLM error: {first}"
        return EpisodeObjects(episode_id, names, error, answers)


def dataset_label_set(objects: dict[str, EpisodeObjects], num_clusters: int = DEFAULT_NUM_CLUSTERS,
                      model_path=None, seed: int = 0) -> LabelSet:
    """The dataset's label set: every episode's names, with repeats (frequent names weigh
    more and name their cluster), embedded and clustered by
    :func:`orv_engine.occupancy.labels.build_label_set`."""
    raw = [name for episode in objects.values() for name in episode.names]
    if not any(normalise_label(name) for name in raw):
        failed = [f"{e.episode_id}: {e.error or 'no names'}" for e in objects.values()][:3]
        detail = f"; first errors: {' | '.join(failed)}" if failed else ""
        raise OccupancyInputError(f"objects: none of the {len(objects)} episodes gave a usable object name{detail}")
    return build_label_set(raw, num_clusters=num_clusters, model_path=model_path, seed=seed)


def episode_class_names(objects: EpisodeObjects, label_set: LabelSet) -> list[str]:
    """The label-set names the episode's objects map to: distinct, in label-set (id) order.
    Names missing from the label set's mapping (it was built on other episodes) are skipped."""
    ids = {label_set.mapping[key] for key in (normalise_label(n) for n in objects.names) if key in label_set.mapping}
    return [label_set.names[i] for i in sorted(ids)]


__all__ = ["MAX_WORDS_PER_NAME", "NON_OBJECT_WORDS", "OBJECT_LIST_PROMPT", "EpisodeObjects", "ObjectLister",
           "dataset_label_set", "episode_class_names", "keyframe_indices", "parse_object_list"]
