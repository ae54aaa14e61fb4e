"""Grounding DINO + SAM2 adapter: tiny random models in the transformers on-disk format,
loaded from local folders through the same code path as real checkpoints. Random weights
detect nothing meaningful, so this checks the mechanics (shapes, label range, errors)."""

import numpy as np
import pytest
import torch

from orv_engine.occupancy import OccupancyInputError
from orv_engine.occupancy.segmentation import GroundedSam2Segmenter, phrase_to_class


def _tiny_grounding_dino(folder):
    from transformers import (BertConfig, BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "cup", "table"]
    (folder / "vocab.txt").write_text("\n".join(vocab))
    swin = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64,
                      out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = GroundingDinoConfig(backbone_config=swin, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
                                 num_queries=10, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2,
                                 decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2, max_text_len=32)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}),
                           tokenizer=BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))).save_pretrained(folder)
    return folder


def _tiny_sam2(folder):
    import transformers
    from transformers import (Sam2Config, Sam2HieraDetConfig, Sam2MaskDecoderConfig, Sam2Model, Sam2Processor,
                              Sam2PromptEncoderConfig, Sam2VisionConfig)

    backbone = Sam2HieraDetConfig(hidden_size=16, image_size=[128, 128], blocks_per_stage=[1, 1, 2, 1],
                                  embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 1, 1],
                                  window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3],
                                  window_positional_embedding_background_size=[2, 2])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                              backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=32)
    config = Sam2Config(vision_config=vision,
                        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=128, patch_size=16),
                        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2,
                                                                  iou_head_hidden_dim=32))
    Sam2Model(config).save_pretrained(folder)
    processor_class = getattr(transformers, "Sam2ImageProcessor", None) or transformers.Sam2ImageProcessorFast
    Sam2Processor(image_processor=processor_class(size={"height": 128, "width": 128},
                                                  mask_size={"height": 32, "width": 32})).save_pretrained(folder)
    return folder


def test_grounded_sam2_segmenter_runs_from_local_folders(tmp_path):
    torch.manual_seed(0)
    segmenter = GroundedSam2Segmenter(_tiny_grounding_dino(tmp_path / "gdino"), _tiny_sam2(tmp_path / "sam2"),
                                      box_threshold=0.0, text_threshold=0.0)
    frames = np.random.default_rng(0).integers(0, 255, (1, 48, 64, 3), dtype=np.uint8)
    labels = segmenter.segment(frames, ["cup", "table"])
    assert labels.shape == (1, 48, 64) and labels.dtype == np.int64
    assert set(np.unique(labels)) <= {-1, 0, 1}
    with pytest.raises(OccupancyInputError, match="frames"):
        segmenter.segment(frames[0], ["cup"])


def test_grounded_segmenter_needs_model_folders(tmp_path):
    with pytest.raises(OccupancyInputError, match="grounding_dino_path"):
        GroundedSam2Segmenter(tmp_path / "none", tmp_path / "none")


def test_phrases_map_to_classes():
    assert phrase_to_class("Cup", ["table", "cup"]) == 1
    assert phrase_to_class("red cup", ["table", "cup"]) == 1
    assert phrase_to_class("[UNK] [SEP]", ["table", "cup"]) == -1
