"""The training-memory bound of a (T)DLRT layer: how far augmentation may widen each mode.

A step holds, at its widest, the augmented bases ``U~_k`` (n_k x a_k), the augmented core (prod a_k) and the
K matrices of the basis step (n_k x r_k per adaptive mode), plus the bias: :func:`training_parameters`. The
optimizer's state (a momentum buffer or Adam's moments, each core-sized) is counted separately.

:func:`augmentation_caps` picks per mode an augmented-rank cap ``a_k`` and a truncated-rank cap ``r_k`` so that

* the layer never holds more than ``budget`` times its dense layer's parameters at any point of a step
  (``budget`` 1: training never costs more parameters than the dense layer it replaces);
* ``r_k <= a_k / 2``: from any truncated rank, augmentation doubles the rank (within ``n_k``), adding as many
  directions as the unconstrained algorithm does, so the basis keeps moving when the rank sits at its cap, and
  a step is the paper's step, only with the smaller caps;
* the caps stay as large as the budget allows: starting from ``a_k = min(2 r_max_k, n_k)``, the mode with the
  largest ``a_k / n_k`` gives up one column at a time until the budget holds (or every mode is at
  ``2 r_min_k``; such a layer cannot be trained within the budget, and its report shows it).

A matrix layer (one rank shared by both modes) shrinks both modes together.
"""

from __future__ import annotations

from math import prod


def training_parameters(
    n: list[int], augmented: list[int], truncated: list[int], adaptive: list[bool], bias: int
) -> int:
    """Parameters a layer holds at the widest point of a step: augmented bases and core, the K matrices of its
    adaptive modes that can still grow (r_k < a_k), and the bias."""
    bases = sum(nk * ak for nk, ak in zip(n, augmented, strict=True))
    k_mats = sum(nk * rk for nk, ak, rk, ad in zip(n, augmented, truncated, adaptive, strict=True) if ad and rk < ak)
    return bases + prod(augmented) + k_mats + bias


def augmentation_caps(
    n: list[int],
    adaptive: list[bool],
    r_min: list[int],
    r_max: list[int],
    dense: int,
    budget: float = 1.0,
    bias: int = 0,
    tied: bool = False,
) -> tuple[list[int], list[int]]:
    """Augmented-rank caps ``a`` and truncated-rank caps ``r`` (``r_k <= min(r_max_k, a_k // 2)``, fixed modes at
    ``n_k``) whose widest step holds at most ``budget * dense`` parameters where that is possible.
    ``tied``: the modes share one rank (a matrix layer), so they shrink together."""
    a = [min(2 * rm, nk) if ad else nk for nk, rm, ad in zip(n, r_max, adaptive, strict=True)]

    def truncated(aug: list[int]) -> list[int]:
        return [
            min(rm, max(ak // 2, rn)) if ad else nk
            for nk, ak, rm, rn, ad in zip(n, aug, r_max, r_min, adaptive, strict=True)
        ]

    def shrinkable(k: int) -> bool:
        return adaptive[k] and a[k] > min(2 * r_min[k], n[k])

    limit = budget * dense
    while training_parameters(n, a, truncated(a), adaptive, bias) > limit:
        modes = [k for k in range(len(n)) if shrinkable(k)]
        if not modes:
            break
        if tied:  # one augmented rank for all modes, within each mode's size
            top = max(a[k] for k in modes) - 1
            a = [min(ak, top) if k in modes else ak for k, ak in enumerate(a)]
        else:
            k = max(modes, key=lambda j: (a[j] / n[j], a[j]))
            a[k] -= 1
    return a, truncated(a)
