"""Video quality metrics of the paper's Table 1 (PSNR, SSIM, FID, FVD) plus LPIPS.

One file per idea: reading clip folders (``orv_engine.data.clip_files``), per-frame metrics (``orv_engine.evaluation.psnr_ssim``,
``lpips``), the Fréchet distance (``frechet``) and the two networks that feed it
(``fid``: InceptionV3 pool3, ``fvd``: Kinetics-400 I3D, batched by ``features``), the
command that scores a folder of generated clips against a folder of ground truth
(``table1``), and the run that generates a held-out split with ORV and scores it
(``generation_eval``). ``stand_ins`` builds random-weight copies of the real networks in
their real file formats for tests and speed figures.

Networks always load from local files (no model hub here or on many clusters); see
docs/metrics.md for where the real weights come from.
"""
