"""The augmentation loop and its job system: ``orv-augment``.

source episodes -> ``sources`` (actions, states, occupancy-rendered condition maps) ->
``first_frames`` (FLUX ControlNet paints N new appearances per episode, plus the episode's
own first frame for its ``replay`` unit, ``replay``) -> ``rollouts`` (ORV rolls each first
frame out under the episode's actions and conditions) -> ``scores``
(cheap checks + Qwen2.5-VL caption/score, the ``filtering`` package) -> ``filter``
(selection) -> ``export`` (RLDS in BridgeV2's schema, ``vla_finetune``) -> ``merge``
(mixture with BridgeV2) -> ``report`` (ground truth | replay | variants, replay
PSNR/SSIM). ``manifest`` makes every step resumable after a kill; ``runner``
runs the stages in one process, ``ray_runner`` on a Ray cluster, both with the models that
``models`` builds from the config. Importing it fixes the import order.
"""

import orv_engine.import_order as _import_order

_import_order.load_torch_first()
