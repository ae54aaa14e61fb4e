"""Tiny random SAM3-video, Grounding DINO and SAM2-video folders in the real on-disk formats.

Why: the video segmenters of ``orv_engine.occupancy.from_rgb.instances`` load
``facebook/sam3``, ``IDEA-Research/grounding-dino-*`` and ``facebook/sam2.1-hiera-*`` from
local folders, which cannot be downloaded here. These builders write folders that
``from_pretrained(..., local_files_only=True)`` reads exactly like the real ones (config.json
with the real ``model_type``, safetensors, processor / tokenizer files saved by the real
classes), small enough to track a few 64x64 frames in seconds on one CPU core. The weights
are random, so the masks mean nothing.

Size constraints found in transformers 5.25 (the real checkpoints satisfy them):
- the SAM2 / SAM3 trackers' memory cross-attention has a hard-coded key/value width of 64,
  so ``memory_encoder_output_channels`` must be 64;
- object pointers (width = FPN width) are split into memory-width chunks, so the FPN width
  must be a multiple of 64 greater than 64 (128 here);
- SAM3's DETR encoder/decoder read the FPN features directly, so their width equals it too;
- SAM3's ``low_res_mask_size`` must be the tracker's mask size, 4 * image_size / patch_size.

    python -m orv_engine.testing.tiny_segmenters outputs/tiny-segmenters
"""

from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Iterable

import torch

# ---------------------------------------------------------------- SAM3 video (text-prompted)

SAM3_IMAGE_SIZE = 112  # 8 x 8 patches of 14 pixels
SAM3_PATCH_SIZE = 14
SAM3_FPN_WIDTH = 128


def _sam3_clip_vocab() -> dict[str, int]:
    """Character-level CLIP BPE vocabulary (no merges): any lower-case word tokenizes."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    symbols = list(string.ascii_lowercase + string.digits)
    for symbol in symbols:
        vocab[symbol] = len(vocab)
    for symbol in symbols:
        vocab[symbol + "</w>"] = len(vocab)
    return vocab


def build_tiny_sam3_video(folder, seed: int = 0, num_queries: int = 4, hotstart_delay: int = 2) -> Path:
    """A tiny ``Sam3VideoModel`` + ``Sam3VideoProcessor`` folder (model_type ``sam3_video``).

    Detection thresholds are 0 (``score_threshold_detection``, ``new_det_thresh``) so that the
    random detector reports all ``num_queries`` queries per prompt as objects (real checkpoints
    use 0.5 / 0.7); ``hotstart_delay`` is small so that a few frames exercise the delayed output.
    """
    from transformers import (CLIPTokenizer, Sam2VideoVideoProcessor, Sam3Config, Sam3ImageProcessor,
                              Sam3TrackerVideoConfig, Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens_per_side = SAM3_IMAGE_SIZE // SAM3_PATCH_SIZE
    vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, image_size=SAM3_IMAGE_SIZE, patch_size=SAM3_PATCH_SIZE,
               window_size=tokens_per_side // 2, global_attn_indexes=[1], pretrain_image_size=SAM3_IMAGE_SIZE)
    vision = dict(model_type="sam3_vision_model", backbone_config=vit, fpn_hidden_size=SAM3_FPN_WIDTH,
                  backbone_feature_sizes=[[4 * tokens_per_side] * 2, [2 * tokens_per_side] * 2, [tokens_per_side] * 2])
    vocab = _sam3_clip_vocab()
    text = dict(model_type="clip_text_model", vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                projection_dim=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    block = dict(hidden_size=SAM3_FPN_WIDTH, num_layers=1, num_attention_heads=2, intermediate_size=64)
    detector = Sam3Config(vision_config=vision, text_config=text, geometry_encoder_config=dict(block),
                          detr_encoder_config=dict(block), detr_decoder_config=dict(block, num_queries=num_queries),
                          mask_decoder_config=dict(hidden_size=SAM3_FPN_WIDTH, num_attention_heads=2))
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision, prompt_encoder_config=dict(hidden_size=SAM3_FPN_WIDTH),
        mask_decoder_config=dict(hidden_size=SAM3_FPN_WIDTH, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        memory_attention_hidden_size=SAM3_FPN_WIDTH, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_encoder_hidden_size=SAM3_FPN_WIDTH,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=SAM3_FPN_WIDTH,
        memory_fuser_embed_dim=SAM3_FPN_WIDTH, memory_fuser_intermediate_dim=64, num_maskmem=2,
        image_size=SAM3_IMAGE_SIZE)
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * tokens_per_side,
                             score_threshold_detection=0.0, new_det_thresh=0.0, hotstart_delay=hotstart_delay,
                             hotstart_unmatch_thresh=min(8, hotstart_delay), hotstart_dup_thresh=min(8, hotstart_delay))
    torch.manual_seed(seed)
    Sam3VideoModel(config).save_pretrained(folder)
    size = {"height": SAM3_IMAGE_SIZE, "width": SAM3_IMAGE_SIZE}
    Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(size=size, mask_size={"height": 4 * tokens_per_side, "width": 4 * tokens_per_side}),
        video_processor=Sam2VideoVideoProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[]),
    ).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- Grounding DINO (text -> boxes)

def build_tiny_grounding_dino(folder, vocab: Iterable[str] = ("cup", "table"), seed: int = 0) -> Path:
    """A tiny ``GroundingDinoForObjectDetection`` + processor folder; ``vocab`` are the words
    its BERT WordPiece tokenizer knows (lower-cased), besides the specials and ``.``. (The
    vocabulary is passed as a dict: transformers 5 ignores ``vocab_file=`` here.)"""
    from transformers import (BertConfig, BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."]
    words += [word for word in dict.fromkeys(w.strip().lower() for w in vocab) if word and word not in words]
    # 128-pixel inputs: at 64 the extra feature level is 1x1, where GroupNorm(32 groups of 32 channels) fails
    swin = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=128,
                      out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64)
    config = GroundingDinoConfig(backbone_config=swin, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
                                 num_queries=10, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2,
                                 decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2, max_text_len=32)
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 192}),
                           tokenizer=BertTokenizerFast(vocab={word: i for i, word in enumerate(words)})).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- SAM2 video (box-prompted tracking)

SAM2_IMAGE_SIZE = 128
SAM2_FPN_WIDTH = 128


def build_tiny_sam2_video(folder, seed: int = 0) -> Path:
    """A tiny ``Sam2VideoModel`` + ``Sam2VideoProcessor`` folder (model_type ``sam2_video``)."""
    import transformers
    from transformers import (Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor,
                              Sam2VideoVideoProcessor, Sam2VisionConfig)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backbone = Sam2HieraDetConfig(hidden_size=16, image_size=[SAM2_IMAGE_SIZE] * 2, blocks_per_stage=[1, 1, 2, 1],
                                  embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 1, 1],
                                  window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3],
                                  window_positional_embedding_background_size=[2, 2])
    side = SAM2_IMAGE_SIZE // 4
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                              backbone_feature_sizes=[[side, side], [side // 2, side // 2], [side // 4, side // 4]],
                              fpn_hidden_size=SAM2_FPN_WIDTH)
    config = Sam2VideoConfig(
        vision_config=vision, image_size=SAM2_IMAGE_SIZE,
        prompt_encoder_config=dict(hidden_size=SAM2_FPN_WIDTH, image_size=SAM2_IMAGE_SIZE, patch_size=16),
        mask_decoder_config=dict(hidden_size=SAM2_FPN_WIDTH, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        num_maskmem=2, memory_attention_hidden_size=SAM2_FPN_WIDTH, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[side // 4, side // 4],
        memory_encoder_hidden_size=SAM2_FPN_WIDTH, memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=SAM2_FPN_WIDTH, memory_fuser_embed_dim=SAM2_FPN_WIDTH,
        memory_fuser_intermediate_dim=64)
    torch.manual_seed(seed)
    Sam2VideoModel(config).save_pretrained(folder)
    image_processor_class = getattr(transformers, "Sam2ImageProcessor", None) or transformers.Sam2ImageProcessorFast
    size = {"height": SAM2_IMAGE_SIZE, "width": SAM2_IMAGE_SIZE}
    Sam2VideoProcessor(image_processor=image_processor_class(size=size, mask_size={"height": side, "width": side}),
                       video_processor=Sam2VideoVideoProcessor(size=size)).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else "outputs/tiny-segmenters")
    for name, build in (("sam3_video", build_tiny_sam3_video), ("grounding_dino", build_tiny_grounding_dino),
                        ("sam2_video", build_tiny_sam2_video)):
        print(build(root / name))


if __name__ == "__main__":
    main()
