"""Tiny random Kosmos-2 / PaliGemma folders, in the on-disk format of the real checkpoints.

Why: the real backbones (``microsoft/kosmos-2-patch14-224``, ``google/paligemma-3b-pt-224``)
and their tokenizers cannot be downloaded here. Tests and benchmarks build folders that
``from_pretrained`` reads exactly like the real ones: a model (config.json + safetensors)
and a processor (tokenizer.json + preprocessor/processor configs) saved by the real
classes. The tokenizers are trained with the ``tokenizers`` library on a small corpus
(Bridge instructions by default) in the model family's own layout (XLM-R Unigram for
Kosmos-2, Gemma byte-fallback BPE for PaliGemma) and wrapped in the real processor classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import trainers
from transformers import (CLIPImageProcessor, GemmaTokenizer, Kosmos2Config, Kosmos2ForConditionalGeneration,
                          Kosmos2Processor, PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                          SiglipImageProcessor, XLMRobertaTokenizer)

DEFAULT_CORPUS = (
    "put the spoon in the pot", "put carrot on plate", "stack the green block on the yellow block",
    "put eggplant into yellow basket", "open the drawer", "close the microwave door",
    "move the pot to the left side of the stove", "pick up the red cup and place it in the sink",
    "turn the faucet", "what action should the robot take to",
)


def _corpus(extra: Iterable[str] | None) -> list[str]:
    lines = list(DEFAULT_CORPUS) + list(extra or ())
    return lines * 4


def tiny_kosmos2_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 400):
    """An XLM-R style (Unigram, ``<s> <pad> </s> <unk>`` first) tokenizer for Kosmos-2."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    base = XLMRobertaTokenizer()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)
    base._tokenizer.train_from_iterator(_corpus(corpus), trainer=trainer)
    vocab = [tuple(v) for v in json.loads(base._tokenizer.to_str())["model"]["vocab"]]
    # Kosmos-2 uses the ids right after <unk> as image placeholders (64 of them in the real one).
    vocab += [("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=vocab)


def tiny_gemma_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 400):
    """A Gemma style (byte-fallback BPE, ``<pad> <eos> <bos> <unk>``) tokenizer for PaliGemma."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{i:02X}>" for i in range(256)]
    base = GemmaTokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=specials, show_progress=False)
    base._tokenizer.train_from_iterator(_corpus(corpus), trainer=trainer)
    model = json.loads(base._tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return GemmaTokenizer(vocab=model["vocab"], merges=merges)


def build_tiny_kosmos2(out_dir: str | Path, *, image_size: int = 32, seed: int = 0,
                       corpus: Iterable[str] | None = None, num_image_tokens: int = 8) -> Path:
    """A random Kosmos-2 (``Kosmos2ForConditionalGeneration`` + ``Kosmos2Processor``) folder."""
    out_dir = Path(out_dir)
    tokenizer = tiny_kosmos2_tokenizer(corpus)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = Kosmos2Processor(image_processor, tokenizer, num_patch_index_tokens=16)
    config = Kosmos2Config(
        text_config=dict(vocab_size=len(processor.tokenizer), embed_dim=32, layers=2, ffn_dim=64,
                         attention_heads=2, max_position_embeddings=256, scale_embedding=True),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        latent_query_num=num_image_tokens,
    )
    torch.manual_seed(seed)
    model = Kosmos2ForConditionalGeneration(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_paligemma(out_dir: str | Path, *, image_size: int = 32, seed: int = 0,
                         corpus: Iterable[str] | None = None) -> Path:
    """A random PaliGemma (``PaliGemmaForConditionalGeneration`` + ``PaliGemmaProcessor``) folder."""
    out_dir = Path(out_dir)
    patch = 8
    tokenizer = tiny_gemma_tokenizer(corpus)
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size},
                                           image_seq_length=(image_size // patch) ** 2)
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    tok = processor.tokenizer
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=image_size, patch_size=patch,
                           vision_use_head=False),
        text_config=dict(model_type="gemma", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=len(tok),
                         max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        image_token_index=processor.image_token_id,
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
