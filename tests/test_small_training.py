"""The pieces that train and ship the small ORV: the VAE trainer, the latent-store rule that lets
stage 1 read stage 2's store, the starting pipeline and the shipped float16 folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from safetensors import safe_open

from orv_engine.config_validation import ConfigError
from orv_engine.models import ORVTransformer3DModel
from orv_engine.pipelines import ORVPipeline
from orv_engine.small import PACKAGED_VARIANTS, VARIANTS, present_variants, reproduce, small_orv_available
from orv_engine.small.build import assemble_shipped, write_init_pipeline
from orv_engine.training import latents
from orv_engine.training.config import load_config as load_train_config
from orv_engine.training.vae import VAETrainer, load_config
from training_helpers import PROJECT_ROOT, SIM_DATA

VAE_CONFIG = PROJECT_ROOT / "configs" / "small" / "vae.yaml"


def _vae_overrides(out, steps=4, **extra):
    values = {"output_dir": out, "data.path": SIM_DATA, "model.block_out_channels": "[8, 8, 8]",
              "model.norm_num_groups": 4, "data.num_frames": 5, "data.val_frames": 5, "data.val_clips": 2,
              "data.crop": 32, "train.batch_size": 2, "train.max_steps": steps, "train.checkpoint_every": 2,
              "train.log_every": 1, "train.val_every": 0, "optim.lr_warmup_steps": 1, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def test_vae_trainer_resumes_exactly_and_saves_a_loadable_vae(tmp_path):
    whole = VAETrainer(load_config(VAE_CONFIG, _vae_overrides(tmp_path / "whole"))).train()

    class Killed(Exception):
        pass

    class KilledAfterStep2(VAETrainer):  # the same run, killed right after its step-2 checkpoint
        def save_checkpoint(self, step):
            super().save_checkpoint(step)
            raise Killed

    cut = _vae_overrides(tmp_path / "cut")
    with pytest.raises(Killed):
        KilledAfterStep2(load_config(VAE_CONFIG, cut)).train()
    resumed = VAETrainer(load_config(VAE_CONFIG, cut)).train(resume="latest")

    log = lambda out: [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]  # noqa: E731
    assert log(tmp_path / "cut") == log(tmp_path / "whole") and len(log(tmp_path / "whole")) == 4
    a, b = AutoencoderKLCogVideoX.from_pretrained(whole), AutoencoderKLCogVideoX.from_pretrained(resumed)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    metrics = json.loads((whole.parent / "metrics.json").read_text())
    assert 5 < metrics["val_psnr"] < 60 and a.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
    assert a.config.scaling_factor != 1.15258426  # measured, not CogVideoX-2B's default


@pytest.mark.parametrize("override, key", [("data.num_frames=8", "num_frames"), ("data.crop=30", "crop"),
                                           ("model.block_out_channels=[16, 30]", "block_out_channels"),
                                           ("data.path=/nonexistent", "data.path")])
def test_vae_config_errors_name_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(VAE_CONFIG, _vae_overrides(tmp_path) + [override])


def test_vae_trainer_command_reports_a_bad_config_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "orv_engine.training.vae", str(VAE_CONFIG), "--set",
                             "data.num_frames=6"], capture_output=True, text=True)
    assert result.returncode == 2 and "num_frames" in result.stderr and "Traceback" not in result.stderr


def test_a_run_without_conditions_reads_a_store_made_with_them(tmp_path):
    configs = PROJECT_ROOT / "configs" / "small"
    stage2 = load_train_config(configs / "actions_occupancy.yaml", check_paths=False)
    store = tmp_path / "store"
    store.mkdir()
    (store / "index.json").write_text(json.dumps({"fingerprint": latents.fingerprint(stage2), "files": []}))
    point = [f"data.latents_dir={store}"]
    latents.check_store(load_train_config(configs / "actions.yaml", point, check_paths=False))  # stage 1: fine
    latents.check_store(load_train_config(configs / "no_actions.yaml", point, check_paths=False))
    fine = load_train_config(configs / "actions_fine.yaml", point, check_paths=False)
    with pytest.raises(ValueError, match="conditions_source"):  # other maps: refused
        latents.check_store(fine)
    other_clips = load_train_config(configs / "actions.yaml", point + ["data.clip.clip_interval=2"], check_paths=False)
    with pytest.raises(ValueError, match="clip"):
        latents.check_store(other_clips)


@pytest.fixture(scope="module")
def init_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8), latent_channels=16, layers_per_block=1,
                                 down_block_types=("CogVideoXDownBlock3D",) * 3,
                                 up_block_types=("CogVideoXUpBlock3D",) * 3,
                                 norm_num_groups=4, sample_height=64, sample_width=64)
    vae.save_pretrained(root / "vae")
    return write_init_pipeline(root / "vae", root / "init", num_layers=1), root


def test_the_init_pipeline_is_a_small_orv_on_the_given_vae(init_pipeline):
    init, _ = init_pipeline
    pipe = ORVPipeline.from_pretrained(init)
    t = pipe.transformer.config
    assert (t.sample_height, t.sample_width, t.patch_size, t.condition_kinds) == (16, 16, 2, [])  # v4: patch 2
    assert t.text_embed_dim == pipe.text_encoder.config.d_model and t.num_layers == 1


def test_the_shipped_folder_holds_four_float16_variants_that_load_as_trained(init_pipeline, tmp_path, monkeypatch):
    init, root = init_pipeline
    trained = {}
    for i, (name, variant) in enumerate(VARIANTS.items()):
        kinds = ["depth", "semantics"] if variant.conditions else []
        model = ORVTransformer3DModel.from_pretrained(init / "transformer", condition_kinds=kinds)
        with torch.no_grad():  # stand-ins for four trained models: different weights
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01 * (i + 1))
        model.save_pretrained(root / name)
        trained[name] = model
    out = assemble_shipped(init, root / "vae", {n: root / n for n in trained}, tmp_path / "shipped")
    assert small_orv_available(out)
    for name, model in trained.items():
        path = VARIANTS[name].transformer_path(out)
        with safe_open(str(path / "diffusion_pytorch_model.safetensors"), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
        loaded = ORVTransformer3DModel.from_pretrained(path, torch_dtype=torch.float32)
        for (key, p), q in zip(model.named_parameters(), loaded.parameters()):
            assert torch.equal(p.detach().half().float(), q), (name, key)
    pipe = ORVPipeline.from_pretrained(out, torch_dtype=torch.float32)  # transformer/ is variant (c)
    assert pipe.transformer.config.condition_kinds == ["depth", "semantics"]
    with pytest.raises(ValueError, match="actions_fine"):
        assemble_shipped(init, root / "vae", {n: root / n for n in list(trained)[:3]}, tmp_path / "x")

    # --ship copies the pipeline parts, the held-out clips and the packaged variants only
    (out / "heldout").mkdir()
    (out / "heldout" / "clips.npz").write_bytes(b"clips")
    package = tmp_path / "package" / "small_orv"
    monkeypatch.setattr(reproduce, "OUT", tmp_path)
    monkeypatch.setattr(reproduce, "SMALL_ORV_DIR", package)
    reproduce.stage_ship(copy_into_package=True)
    assert present_variants(package) == list(PACKAGED_VARIANTS) and small_orv_available(package)
    assert not small_orv_available(package, variants=VARIANTS)
    assert (package / "heldout" / "clips.npz").read_bytes() == b"clips"
    assert not (package / "variants" / "no_actions").exists() and not (package / "variants" / "actions_fine").exists()


def test_an_interrupted_pre_encoding_resumes_without_redoing_clips(tmp_path, bridge_debug):
    """Pre-encoding is the longest step before training on a CPU; a kill must not lose it."""
    from orv_engine.testing.tiny_orv import save_tiny_pipeline
    from orv_engine.training.components import load_components
    from training_helpers import TINY_CONFIG, tiny_overrides

    model = save_tiny_pipeline(tmp_path / "model")
    store = tmp_path / "latents"
    config = lambda **extra: load_train_config(TINY_CONFIG, tiny_overrides(  # noqa: E731
        model, bridge_debug, store, tmp_path / "run", **{"data.first_frame_variants": 1, **extra}))
    vae = load_components(model, None, []).vae
    files = lambda: sorted((store / "train").glob("*.pt"))  # noqa: E731

    assert latents.pre_encode(config(**{"data.max_clips": 4}), vae) == 4
    first = {p.name: p.stat().st_mtime_ns for p in files()}
    for p in files()[2:]:  # killed after two clips
        p.unlink()
    latents.pre_encode(config(**{"data.max_clips": 4}), vae)
    again = {p.name: p.stat().st_mtime_ns for p in files()}
    assert list(again) == list(first)
    assert [again[n] == first[n] for n in sorted(first)] == [True, True, False, False]
    latents.pre_encode(config(**{"data.max_clips": 2}), vae)  # a smaller store is a prefix
    assert [p.name for p in files()] == list(first)[:2]
    latents.write_index(config(**{"data.max_clips": 2}))
    latents.check_store(config(**{"data.max_clips": 2}))
    (store / "index.json").unlink()
    latents.pre_encode(config(**{"data.max_clips": 2, "data.clip.clip_interval": 2}), vae)  # other clips: redone
    assert all(p.stat().st_mtime_ns != again[p.name] for p in files())
