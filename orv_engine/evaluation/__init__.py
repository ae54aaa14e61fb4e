"""Per-frame video quality (PSNR, SSIM) that library code uses too (training validation).

The heavier distribution metrics (FID, FVD, LPIPS) and the Table 1 command live in
``benchmarks.metrics``, which builds on this.
"""
