"""Tiny random-weight models for the filtering tests, built offline and saved in the real
on-disk formats (HF folders: config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, chat template, preprocessor/video_preprocessor configs).

- :func:`build_tokenizer`: a byte-level BPE trained here on a small text, with Qwen2.5's
  special tokens (``<|im_start|>``, ``<|vision_start|>``, ``<|video_pad|>`` ...) and
  Qwen2.5-VL's chat template.
- :func:`build_tiny_qwen2_5_vl`: ``Qwen2_5_VLForConditionalGeneration`` (2 text layers,
  2 vision blocks) + ``Qwen2_5_VLProcessor`` (image and video processors).
- :func:`build_tiny_qwen2`: a tiny ``Qwen2ForCausalLM`` text model with the same tokenizer
  (the model the vLLM tests serve; this module also runs inside the vLLM venv, whose
  transformers may be another version, so it only uses long-stable APIs).

Run as a script to build one: ``python tests/filtering_models.py {vl,text} OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2.5-VL's chat template (as shipped with Qwen/Qwen2.5-VL-7B-Instruct).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "Pick up the red cube and place it on the blue towel.",
    "Move the gripper to the left and open it.",
    '{"clarity": {"score": 4, "confidence": 0.85}, "physical_realism": {"score": 3, "confidence": 0.7}, '
    '"overall_plausibility": {"score": 5, "confidence": 0.9}, "summary": "Slight blur.", "final_score": 3.9}',
    "You are a strict, reliable, and accountable video quality evaluator specialized in robot-arm "
    "manipulation videos. Score the video on each criterion. Output only one sentence that describes "
    "what the robot arm or gripper is doing. The sentence must strictly start with a verb.",
    "sharpness focus absence of blur ghosting artifacts motion follows physics teleportation "
    "interpenetration deformation geometry collapse temporal spatial consistency lighting stability",
    "0123456789 .,:;{}[]\"'-_()!? abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]


def _corpus() -> list[str]:
    """The texts the BPE learns from, the project's own prompts included (so that prompts
    tokenize to a few hundred tokens, as with a real vocabulary)."""
    try:
        from filtering.prompts import CAPTION_PROMPT, scoring_prompt  # noqa: PLC0415

        return _CORPUS + [CAPTION_PROMPT, scoring_prompt()]
    except ImportError:
        return list(_CORPUS)


def build_tokenizer(out_dir, vocab_size: int = 1500):
    """A Qwen2-style fast tokenizer (byte-level BPE) trained offline; saved to ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus() * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 32768
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    _name_tokenizer_class(out_dir)
    return fast


def _name_tokenizer_class(out_dir: Path) -> None:
    """Name the class real Qwen checkpoints name (every transformers version maps it to its
    byte-level BPE fast tokenizer) and keep the chat template in tokenizer_config.json too."""
    config_path = Path(out_dir) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2))


def _vocab(tokenizer) -> int:
    return (len(tokenizer) + 63) // 64 * 64


def build_tiny_qwen2_5_vl(out_dir, seed: int = 0, hidden: int = 128) -> Path:
    """Tiny random ``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2_5_VLProcessor`` in ``out_dir``."""
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor)
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(out_dir)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads = 2  # head_dim 64: the smallest vLLM's CPU attention kernels take
    head_dim = hidden // heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=_vocab(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
            num_hidden_layers=2, num_attention_heads=heads, num_key_value_heads=1,
            max_position_embeddings=4096, rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
            fullatt_block_indexes=[1], tokens_per_second=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out_dir)
    pixels = dict(min_pixels=56 * 56, max_pixels=112 * 112)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    _name_tokenizer_class(out_dir)
    return out_dir


def build_tiny_qwen2(out_dir, seed: int = 0, hidden: int = 128, layers: int = 2) -> Path:
    """Tiny random ``Qwen2ForCausalLM`` (a text model vLLM serves on CPU) in ``out_dir``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(out_dir)
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=_vocab(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,  # head_dim 64
        max_position_embeddings=4096, bos_token_id=pad, eos_token_id=eos, pad_token_id=pad,
        tie_word_embeddings=False, torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, for its prompts
    kind, out = sys.argv[1], sys.argv[2]
    (build_tiny_qwen2_5_vl if kind == "vl" else build_tiny_qwen2)(out)
    print(out)
