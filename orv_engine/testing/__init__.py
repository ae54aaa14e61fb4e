"""Stand-ins: tiny random-weight models written in the real on-disk formats.

They exist so that tests, ``make demo`` and the CPU benchmarks can run every loader and
pipeline a user runs with real checkpoints, on a machine that cannot download those. They
compute nothing meaningful.

    tiny_orv.py   T5 / CogVideoX VAE / scheduler / ORV transformer pipeline folders
    tiny_flux.py  FLUX.1 pipeline folders and XLabs-style ControlNets (diffusers format)
    tiny_xlabs.py XLabs' released single-file ControlNet format (x-flux ControlNetFlux keys)
    tiny_vla.py   Kosmos-2 and PaliGemma backbone folders with locally trained tokenizers

    python -m orv_engine.testing.tiny_orv outputs/tiny-orv-random
    python -m orv_engine.testing.tiny_flux outputs/tiny-flux
"""
