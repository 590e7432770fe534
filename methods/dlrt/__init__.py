"""Dynamical low-rank training: matrix DLRT (``dlrt``) and geometry-aware Tucker training (``tdlrt``).

A factorized layer holds ``W = C x_1 U_1 ... x_d U_d`` with orthonormal bases ``U_i`` (n_i x r_i) and a core
``C``. Matrix DLRT is the d = 2 case of the same code: conv kernels are reshaped to (out, in*kh*kw), linear
weights are (out, in). TDLRT keeps conv kernels as 4-mode Tucker tensors (out, in, kh, kw).

One optimisation step on one batch (schedule ``every_step``):

1. basis step, all modes from one forward/backward: ``Mat_i(C)^T = Q_i R_i``, ``K_i = U_i R_i^T`` (W unchanged),
   ``dL/dK_i = A_i Q_i`` with ``A_i = Mat_i((dL/dW) x_{j != i} U_j^T)``, computed from the layer's captured
   activations and output gradient (never forming dL/dW for convs, never inverting ``R_i``; for the channel
   modes of a Tucker conv as the gradient of the layer with ``K_i`` as its factor, one core-sized convolution);
   plain SGD step on ``K_i``; augmentation ``U~_i = orth([U_i | K_i])`` with at most ``min(2 r_i, n_i)``
   columns; the core is carried over, ``C~ = C x_i (U~_i^T U_i)``, so the layer's function is unchanged;
2. Galerkin core step: ``optimizer.step()`` of the suite's torch optimizer, in which the cores are ordinary
   parameters beside every non-factorized one (so momentum, Nesterov, weight decay and Adam's moments are
   torch's), with the bases fixed. Its gradient at the
   augmented point is ``dL/dC~ = (dL/dW) x_i U~_i^T``: because augmentation leaves W (and so the loss on this
   batch) unchanged, dL/dW is the one of the first pass, and the same captured activations give it. This is
   exactly what a second forward/backward through the augmented layers would compute (a test checks it), at
   the price of one weight-gradient contraction per layer instead of a whole second pass;
3. truncation: HOSVD of ``C~``; per adaptive mode the smallest rank whose discarded singular values have 2-norm
   at most ``tau * ||C~||_F``, clamped to ``[r_min, r_max]``; ``U_i = U~_i P_i``, ``C = C~ x_i P_i^T``.

Optimizers (``training.optimizer``): ``torch.optim`` SGD with momentum (default), Adam or AdamW act on the cores and
on every non-factorized parameter. When a core changes shape it becomes a new parameter in the optimizer and its
state is transported with it (``harness.toolkit.reshape_parameter``): SGD's momentum and
Adam's first moment by the same matrices as the core (``x_i U~_i^T U_i`` on augmentation, ``x_i P_i^T`` on
truncation), Adam's second moment by their elementwise squares (non-negative; exact when the gradient's
coordinates are uncorrelated); Adam's step count carries on. The K-step is a plain gradient step: the augmented
span ``span[U_i | U_i S_i - lr dL/dK_i] = span[U_i | dL/dK_i]`` does not depend on its step size, so it needs no
optimizer state.

Initializations: ``random`` (orthonormal random bases, a Gaussian core scaled so that E||W||_F^2 matches
PyTorch's default dense init, hence the same output scale), ``decompose`` (truncated HOSVD / SVD of the dense
layer's default init), ``spectral`` (Khodak et al., ICLR 2021: split the singular values evenly between the
factors; with orthonormal Tucker bases all the scale sits in the core, so this is identical to ``decompose``).

Schedule ``amortized``: the basis step and augmentation happen once every ``amortize_steps`` batches; the other
batches take core-only steps in the augmented bases; truncation follows the last core step of the cycle (and
at the end of every epoch, so evaluation and the layer report always see a truncated layer).

Layout: ``algebra`` (tensor algebra as free functions), ``base`` (the layer base: state, basis step,
truncation, report), ``layers`` (one class per structure: linear, conv as a matrix, conv as a Tucker tensor,
each with its forward pass and gradients), ``method`` (``DLRTMethod``, ``TDLRTMethod``). Capture of the layers'
inputs and output gradients, optimizer state through shape changes and the truncation schedule come from the
public ``harness.toolkit``; rank fractions round up (``harness.toolkit.resolve_rank``), as for every method.
"""

from harness_methods.dlrt.algebra import (
    augment_basis,
    fold,
    hosvd,
    left_singular,
    mode_mul,
    multi_mode_mul,
    orthonormal,
    padded,
    pair_channels,
    tail_rank,
    truncation_projections,
    unfold,
)
from harness_methods.dlrt.base import DLRTLayer, initial_decomposition, moves_transport
from harness_methods.dlrt.layers import ConvLayer, ConvMatrixLayer, LinearLayer, MatrixLayer, TuckerConvLayer
from harness_methods.dlrt.method import DLRTMethod, DLRTParams, TDLRTMethod

__all__ = [
    "ConvLayer",
    "ConvMatrixLayer",
    "DLRTLayer",
    "DLRTMethod",
    "DLRTParams",
    "LinearLayer",
    "MatrixLayer",
    "TDLRTMethod",
    "TuckerConvLayer",
    "augment_basis",
    "fold",
    "hosvd",
    "initial_decomposition",
    "left_singular",
    "mode_mul",
    "moves_transport",
    "multi_mode_mul",
    "orthonormal",
    "padded",
    "pair_channels",
    "tail_rank",
    "truncation_projections",
    "unfold",
]
