"""RoboVLMs' released Kosmos checkpoint, converted: it acts as RoboVLMs would and post-finetunes.

The checkpoint is a format twin of ``robovlms/RoboVLMs`` ``kosmos_ph_oxe-pretrain``
(:mod:`orv_engine.testing.released_robovlms`). The reference below is written from the raw
checkpoint tensors with plain torch ops following RoboVLMs' code (``base_backbone.py``
``forward_continuous``, ``base_policy.py`` ``LSTMDecoder``, ``eval/simpler/model_wrapper.py``),
only the Kosmos-2 transformer itself is transformers' class loaded with the raw weights.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from transformers import AutoTokenizer, Kosmos2Config, Kosmos2ForConditionalGeneration

from orv_engine.models.checkpoint_files import CheckpointError
from orv_engine.testing.released_robovlms import write_released_robovlms
from vla_finetune.policies.interface import load_policy
from vla_finetune.policies.robovlm import RoboVLMPolicy
from vla_finetune.policies.robovlm.convert_robovlms import convert_robovlms
from vla_finetune.policy_data.normalization import StatisticsError
from vla_fixtures import PROJECT_ROOT, batch_loss, fixed_batch, write_statistics

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
INSTRUCTION = "put the spoon in the pot"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robovlms_release")
    files = write_released_robovlms(tmp / "release")
    folder = convert_robovlms(files["checkpoint"], tmp / "converted", statistics=files["statistics"],
                              backbone=files["backbone"])
    return {"tmp": tmp, "folder": folder, **files}


# ------------------------------------------------------------ the independent reference


class Reference:
    """RoboVLMs' inference on the raw checkpoint: Kosmos sequence, stateful LSTM, MLP heads, un-normalisation."""

    def __init__(self, files):
        payload = torch.load(files["checkpoint"], map_location="cpu", weights_only=True)
        raw = {k.removeprefix("module.").removeprefix("model."): v.float()
               for k, v in payload.get("state_dict", payload.get("model_state_dict")).items()}
        self.raw = raw
        config = json.loads(files["config"].read_text())
        self.window, self.chunk = config["window_size"], config["fwd_pred_next_n"]
        self.norm = (config["norm_min"], config["norm_max"])
        self.image_size = config["image_size"]
        kosmos = Kosmos2ForConditionalGeneration(Kosmos2Config.from_pretrained(files["backbone"]))
        kosmos.load_state_dict({k.removeprefix("backbone."): v for k, v in raw.items() if k.startswith("backbone.")})
        self.kosmos = kosmos.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(files["backbone"])
        stats = json.loads(files["statistics"].read_text())["action"]
        self.q01, self.q99 = np.asarray(stats["q01"]), np.asarray(stats["q99"])
        self.layers = len([k for k in raw if k.startswith("act_head.rnn.weight_ih_l")])
        self.reset()

    def reset(self):
        self.memory, self.state = [], None

    def text_ids(self, instruction: str) -> list[int]:
        # data_utils.get_text_function(..., "kosmos"): add_special_tokens -> <s> ... </s>
        return self.tokenizer(f"<grounding>An image of a robot {instruction.strip()}")["input_ids"]

    @torch.no_grad()
    def feature(self, image: np.ndarray, instruction: str) -> torch.Tensor:
        size = self.image_size
        pixels = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), np.float32) / 255.0
        pixels = torch.from_numpy((pixels - CLIP_MEAN) / CLIP_STD).float().permute(2, 0, 1)[None]
        vision = self.kosmos.vision_model(pixel_values=pixels).last_hidden_state
        image_embeds = torch.nn.functional.normalize(self.kosmos.vision_model.model.post_layernorm(vision), dim=-1)
        image_embeds = self.kosmos.image_to_text_projection(image_embeds)[0][0]
        ids = torch.tensor(self.text_ids(instruction))
        words = self.kosmos.text_model.model.embed_tokens(ids)
        # [BOS] image [text] [ACT] [EOS]: image after BOS, the action token before EOS
        sequence = torch.cat([words[:1], image_embeds, words[1:-1], self.raw["action_token"][None], words[-1:]])
        out = self.kosmos.text_model(inputs_embeds=sequence[None], attention_mask=torch.ones(1, len(sequence)),
                                     output_hidden_states=True)
        return out.hidden_states[-1][0, len(sequence) - 2]

    def lstm_step(self, x: torch.Tensor, state):
        h_all, c_all = state if state is not None else ([torch.zeros(self.hidden)] * self.layers,
                                                          [torch.zeros(self.hidden)] * self.layers)
        new_h, new_c = [], []
        for k in range(self.layers):
            w = {n: self.raw[f"act_head.rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            gates = w["weight_ih"] @ x + w["bias_ih"] + w["weight_hh"] @ h_all[k] + w["bias_hh"]
            i, f, g, o = gates.chunk(4)
            c = torch.sigmoid(f) * c_all[k] + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            new_h.append(h), new_c.append(c)
            x = h
        return x, (new_h, new_c)

    @property
    def hidden(self) -> int:
        return self.raw["act_head.rnn.weight_hh_l0"].shape[1]

    def mlp(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for i in (0, 2, 4, 6):
            x = self.raw[f"act_head.{name}.mlp.{i}.weight"] @ x + self.raw[f"act_head.{name}.mlp.{i}.bias"]
            x = torch.relu(x) if i < 6 else x
        return x

    @torch.no_grad()
    def step(self, image: np.ndarray, instruction: str) -> np.ndarray:
        """One Simpler step: the (K, 7) chunk RoboVLMs un-normalises (row 0 is executed)."""
        self.memory.append(self.feature(image, instruction))
        if len(self.memory) <= self.window:  # LSTMDecoder: stateful until the window is full...
            out, self.state = self.lstm_step(self.memory[-1], self.state)
        else:  # ...then from a zero state over the last window_size frames
            self.memory = self.memory[-self.window:]
            state = None
            for x in self.memory:
                out, state = self.lstm_step(x, state)
        arm = torch.tanh(self.mlp("actions", out)).view(self.chunk, 6).numpy()
        gripper = (torch.sigmoid(self.mlp("gripper", out)) > 0.5).float().numpy()
        lo, hi = self.norm
        arm = 0.5 * (arm + 1) * (hi - lo) + lo  # unnoramalize_action(norm_min, norm_max)
        gripper = np.where(gripper > 0, 1.0, -1.0)  # raw_calvin: (g - 0.5) * 2, then sign
        action = np.concatenate([arm, gripper[:, None]], axis=1)
        return 0.5 * (action + 1) * (self.q99 - self.q01) + self.q01  # q01/q99, no mask: all 7 dims


def frames(n: int, seed: int = 0, shape=(48, 64, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


# ------------------------------------------------------------ tests


def test_converted_policy_acts_as_robovlms(release):
    reference = Reference(release)
    policy = load_policy(release["folder"], execute_steps=1, gripper_open_after=1)  # the raw predictions
    as_released = load_policy(release["folder"])  # + RoboVLMs' WidowX gripper rule (open after 2 "open"s)
    model = RoboVLMPolicy.from_pretrained(release["folder"]).eval()
    policy.reset(INSTRUCTION), model.reset(INSTRUCTION), as_released.reset(INSTRUCTION)
    streak = 0
    images = frames(reference.window + 3)  # past the window: the history slides
    executed = []
    for image in images:
        expected = reference.step(image, INSTRUCTION)
        executed.append(expected[0])
        chunk = model.predict_chunk(image)
        np.testing.assert_allclose(chunk[:, :6], expected[:, :6], rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(chunk[:, 6], expected[:, 6])
        # the Simpler wrapper executes the chunk's first action every step
        np.testing.assert_allclose(policy.act(image), expected[0], rtol=1e-4, atol=1e-6)
        streak = streak + 1 if expected[0, 6] > 0.5 else 0
        released_action = as_released.act(image)
        np.testing.assert_allclose(released_action[:6], expected[0, :6], rtol=1e-4, atol=1e-6)
        assert released_action[6] == float(streak >= 2)
    assert np.ptp(np.stack(executed)[:, :6], axis=0).min() > 0  # the actions do depend on the frames


def test_sequence_and_prompt_follow_robovlms(release):
    policy = RoboVLMPolicy.from_pretrained(release["folder"]).eval()
    reference = Reference(release)
    assert policy.prompts(["  put the Spoon in the pot. "]) == [
        "<grounding>An image of a robot put the Spoon in the pot."]
    ids = policy.prompt_ids(policy.prompts([INSTRUCTION])[0])
    tokenizer = policy.processor.tokenizer
    assert ids == reference.text_ids(INSTRUCTION)
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.convert_tokens_to_ids("<image>") not in ids  # no image markers, unlike Kosmos2Processor
    assert tokenizer.convert_tokens_to_ids("<grounding>") in ids
    image = frames(1, 3)[0]
    with torch.no_grad():
        feature = policy.frame_features([image], [INSTRUCTION])[0]
    torch.testing.assert_close(feature, reference.feature(image, INSTRUCTION), rtol=1e-4, atol=1e-5)
    # batched rows of different instruction lengths give each row's own feature (padding after EOS)
    with torch.no_grad():
        batched = policy.frame_features([image, image], ["open the drawer", INSTRUCTION])
    torch.testing.assert_close(batched[1], feature, rtol=1e-4, atol=1e-5)


def test_folder_holds_the_release(release):
    folder = release["folder"]
    statistics = json.loads((folder / "dataset_statistics.json").read_text())
    assert statistics == json.loads(release["statistics"].read_text())
    policy = RoboVLMPolicy.from_pretrained(folder)
    q01, q99 = (np.asarray(statistics["action"][k][:6]) for k in ("q01", "q99"))
    np.testing.assert_allclose(policy.normalizer.unnormalize(np.r_[-np.ones(6), 0])[:6], q01, rtol=1e-6)
    np.testing.assert_allclose(policy.normalizer.unnormalize(np.r_[np.ones(6), 1])[:6], q99, rtol=1e-6)
    c = policy.config
    assert (c.history_len, c.chunk_size, c.lstm_hidden_size, c.lstm_num_layers) == (3, 2, 16, 4)
    assert c.head_hidden_sizes == [1024, 512, 256] and (c.action_norm_min, c.action_norm_max) == (-0.65, 0.65)
    assert (c.execution, c.execute_steps) == ("chunk", 1) and c.arm_loss == "huber" and c.gripper_loss_weight == 0.01
    raw = torch.load(release["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    ours = policy.state_dict()
    assert {f"model.{k}" for k in ours} == set(raw)
    for key, value in ours.items():
        torch.testing.assert_close(value, raw[f"model.{key}"], rtol=0, atol=0)
    assert isinstance(policy.act_head.actions.mlp[-1], torch.nn.Tanh)
    assert not isinstance(policy.act_head.gripper.mlp[-1], torch.nn.Tanh)
    provenance = json.loads((folder / "robovlms_conversion.json").read_text())
    assert provenance["config"] == str(release["config"])  # found beside the checkpoint


def test_other_layouts_convert(tmp_path):
    files = write_released_robovlms(tmp_path / "release", container="model_state_dict", module_prefix=True,
                                    dtype=torch.bfloat16, num_layers=2)
    folder = convert_robovlms(files["checkpoint"], tmp_path / "converted", statistics=files["statistics"],
                              backbone=files["backbone"])
    policy = RoboVLMPolicy.from_pretrained(folder)
    assert policy.action_token.dtype == torch.bfloat16 and policy.config.lstm_num_layers == 2
    acting = load_policy(folder, execute_steps=1)
    acting.reset(INSTRUCTION)
    assert np.all(np.isfinite(acting.act(frames(1)[0])))
    as_float = convert_robovlms(files["checkpoint"], tmp_path / "as_float", statistics=files["statistics"],
                                backbone=files["backbone"], dtype="float32")
    assert RoboVLMPolicy.from_pretrained(as_float).action_token.dtype == torch.float32
    # no backbone argument: the config's .vlms/kosmos-2-patch14-224, found next to the configs folder
    assert convert_robovlms(files["checkpoint"], tmp_path / "found", statistics=files["statistics"]).is_dir()
    # saved by another transformers version: a persistent position_ids buffer, the tied LM head left out
    payload = torch.load(files["checkpoint"], map_location="cpu", weights_only=True)
    state = payload["model_state_dict"]
    state.pop("module.model.backbone.text_model.lm_head.weight")
    state["module.model.backbone.vision_model.model.embeddings.position_ids"] = torch.arange(17)[None]
    torch.save(payload, tmp_path / "older.pt")
    older = convert_robovlms(tmp_path / "older.pt", tmp_path / "older", statistics=files["statistics"],
                             config=files["config"], backbone=files["backbone"])
    torch.testing.assert_close(RoboVLMPolicy.from_pretrained(older).state_dict()["action_token"], policy.action_token)
    # a checkpoint alone: the head from its tensors, RoboVLMs' window 16 and +-0.65 assumed
    (tmp_path / "bare").mkdir()
    alone = shutil.copy(files["checkpoint"], tmp_path / "bare" / "epoch=0-step=50000.ckpt")
    bare = RoboVLMPolicy.from_pretrained(convert_robovlms(alone, tmp_path / "bare_out", statistics=files["statistics"],
                                                          backbone=files["backbone"]))
    assert (bare.config.history_len, bare.config.chunk_size, bare.config.action_norm_max) == (16, 2, 0.65)


def _save_variant(release, tmp_path, edit, name="variant.pt"):
    payload = torch.load(release["checkpoint"], map_location="cpu", weights_only=True)
    edit(payload)
    path = tmp_path / name
    torch.save(payload, path)
    return path


def _config_variant(release, tmp_path, edit):
    values = json.loads(release["config"].read_text())
    edit(values)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return path


def test_bad_inputs_name_the_file_and_field(release, tmp_path):
    files = dict(statistics=release["statistics"], backbone=release["backbone"], config=release["config"])
    ckpt = release["checkpoint"]
    out = iter(tmp_path / f"out{i}" for i in range(100))

    with pytest.raises(CheckpointError, match="missing.pt not found"):
        convert_robovlms(tmp_path / "missing.pt", next(out), **files)
    # wrong checkpoint kinds
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=r"other.pt: no 'state_dict' or 'model_state_dict'"):
        convert_robovlms(other, next(out), **files)
    garbage = tmp_path / "model.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="model.safetensors: not a torch checkpoint"):
        convert_robovlms(garbage, next(out), **files)
    no_lstm = _save_variant(release, tmp_path, lambda p: [p["state_dict"].pop(k) for k in list(p["state_dict"])
                                                          if ".rnn." in k])
    with pytest.raises(CheckpointError, match=r"variant.pt: no model.act_head.rnn.weight_ih_l0"):
        convert_robovlms(no_lstm, next(out), **files)
    paligemma = _config_variant(release, tmp_path, lambda v: v.update(model="paligemma"))
    with pytest.raises(CheckpointError, match=r"config.json: field 'model' is 'paligemma'"):
        convert_robovlms(ckpt, next(out), **{**files, "config": paligemma})
    gpt = _config_variant(release, tmp_path, lambda v: v["act_head"].update(type="GPTDecoder"))
    with pytest.raises(CheckpointError, match=r"config.json: field act_head.type is 'GPTDecoder'"):
        convert_robovlms(ckpt, next(out), **{**files, "config": gpt})
    # statistics
    with pytest.raises(StatisticsError, match="holds no action statistics"):
        convert_robovlms(ckpt, next(out), **{**files, "statistics": None})
    with pytest.raises(StatisticsError, match="nothing.json not found"):
        convert_robovlms(ckpt, next(out), **{**files, "statistics": tmp_path / "nothing.json"})
    stats = json.loads(release["statistics"].read_text())
    del stats["action"]["q99"]
    (tmp_path / "no_q99.json").write_text(json.dumps(stats))
    with pytest.raises(StatisticsError, match=r"no_q99.json: action.q99 missing"):
        convert_robovlms(ckpt, next(out), **{**files, "statistics": tmp_path / "no_q99.json"})
    # mismatched shapes
    chunk = _config_variant(release, tmp_path, lambda v: v.update(fwd_pred_next_n=5))
    with pytest.raises(CheckpointError, match=r"config.json: fwd_pred_next_n is 5, but .*pretrain.pt "
                                              r"model.act_head.actions.mlp.6.weight predicts chunks of 2"):
        convert_robovlms(ckpt, next(out), **{**files, "config": chunk})
    hidden = _config_variant(release, tmp_path, lambda v: v["act_head"].update(hidden_size=1024))
    with pytest.raises(CheckpointError, match=r"act_head.hidden_size is 1024, but .* hidden size 16"):
        convert_robovlms(ckpt, next(out), **{**files, "config": hidden})
    key = "model.backbone.text_model.model.layers.0.ffn.fc1.weight"
    narrow = _save_variant(release, tmp_path, lambda p: p["state_dict"].update({key: torch.zeros(3, 3)}), "narrow.pt")
    with pytest.raises(CheckpointError, match=rf"narrow.pt: {key} has shape \(3, 3\), the Kosmos-2 config .* expects"):
        convert_robovlms(narrow, next(out), **files)
    gone = _save_variant(release, tmp_path, lambda p: p["state_dict"].pop(key), "gone.pt")
    with pytest.raises(CheckpointError, match=rf"gone.pt: missing 1 tensors \({key}\)"):
        convert_robovlms(gone, next(out), **files)
    with pytest.raises(CheckpointError, match="exists and is not an empty folder"):
        convert_robovlms(ckpt, release["folder"], **files)
    with pytest.raises(CheckpointError, match="empty_kosmos has no config.json"):
        convert_robovlms(ckpt, next(out), **{**files, "backbone": tmp_path / "empty_kosmos"})
    with pytest.raises(CheckpointError, match=r"config.json: model_type None, expected 'kosmos-2'"):
        convert_robovlms(ckpt, next(out), **{**files, "backbone": tmp_path})  # holds the config variant


def test_post_finetuning_starts_from_the_released_head(release, bridge_debug, tmp_path):
    from vla_finetune.train_cli import main
    from vla_finetune.training.trainer import VLATrainer
    from vla_finetune.training.config import load_config

    statistics = write_statistics(bridge_debug, tmp_path / "dataset_statistics_openvla.json")
    values = yaml.safe_load((PROJECT_ROOT / "configs" / "vla" / "tiny_robovlm.yaml").read_text())
    values.update(output_dir=str(tmp_path / "run"))
    values["policy"].update(pretrained_path=str(release["folder"]), options={})
    values["data"].update(datasets=[{"path": str(bridge_debug), "weight": 1.0}], statistics=str(statistics),
                          shuffle_buffer=16)
    values["train"].update(max_steps=3, batch_size=2, log_every=1)
    config_file = tmp_path / "post_finetune.yaml"
    config_file.write_text(yaml.safe_dump(values))

    # step 0: the trainer's policy is the converted one, head and all
    trainer = VLATrainer(load_config(config_file), log=lambda message: None)
    trainer.setup()
    converted = RoboVLMPolicy.from_pretrained(release["folder"])
    started = trainer.unwrapped.state_dict()
    for key, value in converted.state_dict().items():
        torch.testing.assert_close(started[key], value, rtol=0, atol=0)
    batch = fixed_batch(trainer.unwrapped, bridge_debug, size=4)
    assert batch["images"].shape[1] == converted.config.history_len
    assert batch_loss(trainer.unwrapped, batch) == pytest.approx(batch_loss(converted, batch), rel=1e-6)

    assert main([str(config_file)]) == 0
    final = tmp_path / "run" / "final"
    tuned = RoboVLMPolicy.from_pretrained(final)
    assert tuned.config.to_dict()["head_hidden_sizes"] == [1024, 512, 256]
    assert not torch.equal(tuned.act_head.actions.mlp[0].weight, converted.act_head.actions.mlp[0].weight)
    policy = load_policy(final, execute_steps=1)
    policy.reset(INSTRUCTION)
    assert policy.act(frames(1)[0]).shape == (7,)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log and all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    shutil.rmtree(tmp_path / "run")
