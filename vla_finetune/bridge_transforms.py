"""What Octo and OpenVLA do to a ``bridge_dataset`` episode before training, in numpy.

Learnt from (not copied) ``octo/data/oxe/oxe_standardization_transforms.py``
(``bridge_dataset_transform``) and ``prismatic/vla/datasets/rlds/oxe/transforms.py``
(``bridge_orig_dataset_transform``, registered for ``bridge_orig`` and ``bridge_dataset``):

- both binarize the gripper action (> 0.95 open, < 0.05 closed, values in between take
  the next decided value, scanning backwards) and relabel the 6 movement dimensions as
  ``state[t + 1, :6] - state[t, :6]``, which discards the last step (no next state);
- OpenVLA first drops step 0 (BridgeV2's first action is all zeros);
- proprio: Octo uses ``observation/state`` (7-d); OpenVLA concatenates
  ``[state[:6], <pad 0>, state[6]]`` (8-d, ``StateEncoding.POS_EULER``).

Used to check clips at export (:func:`check_relabel`), to compute the normalisation
statistics both frameworks will see, and in the tests as the compatibility oracle.
"""

from __future__ import annotations

import numpy as np

from vla_finetune.clip_record import ExportError

FRAMEWORKS = ("octo", "openvla")


def binarize_gripper(actions: np.ndarray) -> np.ndarray:
    """Continuous gripper commands -> 0/1, as both frameworks' ``binarize_gripper_actions``."""
    actions = np.asarray(actions, np.float32).reshape(-1)
    out = np.empty_like(actions)
    if actions.size == 0:
        return out
    carry = float(actions[-1])
    for i in range(actions.size - 1, -1, -1):
        value = actions[i]
        if value > 0.95:
            carry = 1.0
        elif value < 0.05:
            carry = 0.0
        out[i] = carry
    return out


def bridge_transform(states: np.ndarray, actions: np.ndarray, framework: str = "openvla"):
    """One episode's ``(proprio, actions)`` after the framework's Bridge standardization.

    Returns float32 arrays of ``T - 1`` (Octo) or ``T - 2`` (OpenVLA) rows; ``proprio`` is
    7-d for Octo and 8-d for OpenVLA. Also returns the kept source step indices.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, not {framework!r}")
    states = np.asarray(states, np.float32)
    actions = np.asarray(actions, np.float32)
    steps = np.arange(len(states))
    if framework == "openvla":
        states, actions, steps = states[1:], actions[1:], steps[1:]
    gripper = binarize_gripper(actions[:, 6]) if len(actions) else actions[:, 6]
    movement = states[1:, :6] - states[:-1, :6]
    relabelled = np.concatenate([movement, gripper[:-1, None]], axis=1).astype(np.float32)
    kept_states = states[:-1]
    if framework == "openvla":
        proprio = np.concatenate(
            [kept_states[:, :6], np.zeros((len(kept_states), 1), np.float32), kept_states[:, 6:7]], axis=1)
    else:
        proprio = kept_states
    return proprio.astype(np.float32), relabelled, steps[:-1]


def check_relabel(
    states: np.ndarray,
    actions: np.ndarray,
    where: str,
    *,
    min_steps: int = 3,
    min_correlation: float = 0.3,
    ratio_range: tuple[float, float] = (0.25, 4.0),
    max_angle_step: float = np.pi / 2,
) -> None:
    """Refuse states/actions that Octo's/OpenVLA's relabelling would turn into wrong labels.

    Both frameworks train on ``state[t+1] - state[t]``, not on the stored commands, so the
    states must move the way the commands (the actions the clip was generated under) say:
    - at least ``min_steps`` steps (OpenVLA drops the first and the relabelling the last);
    - no roll/pitch/yaw jump above ``max_angle_step`` between steps (an angle wrap would
      become a ~2*pi action);
    - when the commands move the end effector, the reached xyz deltas correlate with the
      commanded ones (>= ``min_correlation``) at a similar scale (norm ratio in
      ``ratio_range``). Real BridgeV2 episodes give correlation 0.68-0.97, ratio 0.66-1.08;
      constant, misaligned, sign-flipped or mis-scaled states do not.
    """
    states = np.asarray(states, np.float64)
    actions = np.asarray(actions, np.float64)
    n = len(states)
    if n < min_steps:
        raise ExportError(
            f"clip {where}: {n} steps; Octo/OpenVLA's Bridge transforms drop the first and last "
            f"step, so a clip needs at least {min_steps}"
        )
    delta = np.diff(states, axis=0)
    jumps = np.abs(delta[:, 3:6])
    if jumps.size and jumps.max() > max_angle_step:
        step, dim = map(int, np.argwhere(jumps == jumps.max())[0])
        raise ExportError(
            f"clip {where}: state roll/pitch/yaw dim {3 + dim} jumps by {jumps.max():.3f} rad between "
            f"steps {step} and {step + 1} (an angle wrap?); the relabelled action would be that jump. "
            "Unwrap the angles (np.unwrap) before export"
        )
    commanded = actions[:-1, :3]
    reached = delta[:, :3]
    moving = np.abs(commanded).sum(1) > 0  # BridgeV2's all-zero first command carries no information
    commanded, reached = commanded[moving], reached[moving]
    if commanded.size == 0 or np.linalg.norm(commanded) < 1e-6:
        return
    norm_ratio = float(np.linalg.norm(reached) / np.linalg.norm(commanded))
    if not ratio_range[0] <= norm_ratio <= ratio_range[1]:
        raise ExportError(
            f"clip {where}: states move {norm_ratio:.3g}x as far as the actions command (xyz, allowed "
            f"{ratio_range[0]}-{ratio_range[1]}); Octo/OpenVLA relabel actions as state[t+1] - state[t], "
            "so these states would give wrong action labels (constant, misaligned or mis-scaled states?)"
        )
    a, r = commanded.ravel(), reached.ravel()
    if a.std() > 0 and r.std() > 0:
        corr = float(np.corrcoef(a, r)[0, 1])
        if corr < min_correlation:
            raise ExportError(
                f"clip {where}: reached xyz deltas state[t+1] - state[t] correlate {corr:.2f} with the "
                f"commanded actions (need >= {min_correlation}); Octo/OpenVLA train on the former, so the "
                "states do not belong to these actions (misaligned or wrong sign?)"
            )
