"""FID, FVD and LPIPS end to end with random-weight networks of the real architectures,
saved in the real file formats and loaded through the same code as the real weights."""

import numpy as np
import pytest
import torch

from orv_engine.device import resolve_device
from benchmarks.metrics.fid import InceptionFeatures, load_inception
from benchmarks.metrics.frechet import frechet_distance_of_features
from benchmarks.metrics.fvd import ClipTooShortError, I3DFeatures, load_i3d, preprocess
from benchmarks.metrics.lpips import LPIPSFrames, load_lpips
from metrics_helpers import (
    alexnet_weights,
    fid_inception_weights,
    i3d_state_dict,
    i3d_torchscript,
    noisy,
    smooth_clip,
)


def test_fid_identical_sets_zero_and_different_sets_positive():
    inception = InceptionFeatures(fid_inception_weights(), device="cpu")
    frames = np.concatenate([smooth_clip(1, 40, 56, seed=s) for s in range(3)])
    other = np.concatenate([smooth_clip(1, 40, 56, seed=s) for s in (7, 8, 9)])
    a, b = inception(frames), inception(frames)
    assert a.shape == (3, 2048) and np.isfinite(a).all() and a.std() > 0
    assert frechet_distance_of_features(a, b) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance_of_features(a, inception(other)) > 1e-3


def test_fid_weights_of_another_architecture_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="pytorch-fid's FID InceptionV3"):
        load_inception(alexnet_weights(), "cpu")
    with pytest.raises(FileNotFoundError, match="pt_inception"):
        load_inception(tmp_path / "nope.pth", "cpu")


def test_i3d_preprocessing_matches_the_two_protocols():
    clips = torch.full((1, 2, 32, 64, 3), 255, dtype=torch.uint8)
    for variant in ("styleganv", "videogpt"):
        x = preprocess(clips, variant)
        assert x.shape == (1, 3, 2, 224, 224)
        torch.testing.assert_close(x, torch.ones_like(x))
    ramp = torch.arange(64, dtype=torch.uint8).repeat(1, 1, 32, 1)[..., None].expand(1, 1, 32, 64, 3)
    stretched, cropped = preprocess(ramp.contiguous(), "styleganv"), preprocess(ramp.contiguous(), "videogpt")
    assert stretched[0, 0, 0, 0, 0] < cropped[0, 0, 0, 0, 0]  # the centre crop drops the dark left edge


def test_fvd_videogpt_state_dict_and_short_clips():
    features = I3DFeatures(i3d_state_dict(), "videogpt", device="cpu")
    clip = smooth_clip(10, 32, 32)[None]
    out = features(clip)
    assert out.shape == (1, 400) and np.isfinite(out).all()
    with pytest.raises(ClipTooShortError, match="8-frame clips"):
        features(clip[:, :8])


def test_i3d_files_of_the_other_variant_are_rejected():
    with pytest.raises(ValueError, match="not a TorchScript file"):
        load_i3d(i3d_state_dict(), "styleganv", "cpu")
    with pytest.raises(ValueError, match="use variant 'styleganv'"):
        load_i3d(i3d_torchscript(), "videogpt", "cpu")
    with pytest.raises(ValueError, match="unknown I3D variant"):
        load_i3d(i3d_torchscript(), "tf-hub", "cpu")


def test_lpips_with_a_local_backbone():
    lpips = LPIPSFrames(alexnet_weights(), "alex", device="cpu")
    gt = smooth_clip(2, 64, 64)
    np.testing.assert_allclose(lpips(gt, gt), 0.0, atol=1e-7)
    far = lpips(noisy(gt, 80), gt)
    assert far.shape == (2,) and (far > lpips(noisy(gt, 5), gt)).all()


def test_lpips_without_weights_says_which_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        load_lpips(None, "alex", "cpu")
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        load_lpips(tmp_path / "missing.pth", "vgg", "cpu")
    with pytest.raises(ValueError, match="torchvision's alex state dict"):
        load_lpips(i3d_state_dict(), "alex", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")
