"""Fixed-rank factorized-layer baselines: Tucker, CP and tensor-train (tltorch) and a two-factor matrix format.

Four methods, registered as ``tucker``, ``cp``, ``tt`` and ``matrix``: one method,
:class:`~harness_methods.fixed_rank.method.FixedRankMethod`, parameterized by its format
(:mod:`~harness_methods.fixed_rank.formats`; each format declares its name once, in its class line, e.g.
``class CP(Format, name="cp")``). Each replaces the selected conv and
linear layers of the dense model by a factorized layer of fixed rank and then trains as usual (one
forward/backward/step per batch).

Formats
-------
* ``tucker``: conv kernels (out, in, kh, kw) as Tucker tensors through ``tltorch.FactorizedConv``; with
  ``modes: channels`` (default, "Tucker-2") only the two channel modes are truncated and the spatial modes
  keep full rank (their kh x kh and kw x kw factors stay trainable parameters), with ``modes: all`` all
  four modes are truncated. Linear weights (out, in) are 2-way Tucker tensors U C V^T (a low-rank matrix
  with a core).
* ``cp``: conv kernels as CP tensors (``tltorch.FactorizedConv``), linear weights as 2-way CP tensors
  U diag(1) V^T. tltorch's CP weight vector lambda is folded into the factors and kept as a buffer of
  ones, so a layer holds exactly r * sum(n_i) weight parameters.
* ``tt``: conv kernels as tensor trains over tltorch's mode order (in, kh, kw, out) through
  ``tltorch.FactorizedConv``, linear weights as 2-core tensor trains (out, in).
* ``matrix``: W = U V^T of the kernel reshaped to (out, in*kh*kw): a conv with r output channels and the
  original kernel size/stride/padding/dilation (V^T) followed by a 1x1 conv carrying the bias (U);
  linear layers as two Linear maps. tltorch has no such layer.

Linear layers use the 2-way (matrix) form of each format rather than tltorch's tensorized linear
layers (``FactorizedLinear`` reshapes the weight into a higher-order tensor): in every format a factorized
linear layer is then a rank-r matrix, and a rank means the same thing for every format.

Rank (parameters ``rank`` / ``compression``)
--------------------------------------------
Every layer has a vector of *free ranks* with upper bounds ("full rank"):

* tucker: one per truncated mode, bounded by that mode's size (channels: out, in; all: out, in, kh, kw;
  linear: out, in);
* cp: one rank; for linear layers bounded by min(out, in) (where 2-way CP is exact), for convs by the
  parameter-parity rank ceil(N / sum(n_i)) at which the CP kernel has as many parameters as the dense one
  (a conv kernel's CP rank is not bounded by its dimensions; a fraction f of this bound keeps about a
  fraction f of the kernel's parameters, like tltorch's float ranks);
* tt: the inner TT ranks r_1..r_{d-1}, bounded by min(n_1...n_k, n_{k+1}...n_d) (conv: 3, linear: 1);
* matrix: one rank, bounded by min(out, in*kh*kw).

``rank`` is either a float f in (0, 1] (each free rank = ``harness.toolkit.rank_from_fraction(f, bound)``, the
one rule of every method: ceil(f * bound) clipped to [1, bound], f * bound rounded to 9 decimals first; for tt
then clipped so neighbouring ranks stay consistent), an int (every free rank; it must not exceed any bound; note that
``1`` is rank one while ``1.0`` is full rank), or a per-mode list of ints (in a suite, where a list value
means a sweep, write it as a list of lists, e.g. ``rank: [[64, 32]]``) (tucker: 2 entries for ``modes: channels``,
4 for ``modes: all``, linear layers use the first two; tt: 3 inner ranks for convs, linear layers use the
first; cp and matrix have a single rank and take no list). ``compression`` c in (0, 1) instead picks, per
layer, the largest uniform fraction f whose layer (weight + bias) keeps at most (1 - c) of the dense
layer's parameters, so each factorized layer is compressed by at least c (the model-level compression the
engine reports is lower: the first conv, the last linear and BatchNorm stay dense). Resolved ranks are
reported in ``LayerStats.ranks`` (tucker: per mode; cp: [r]; tt: [1, r_1, ..., r_{d-1}, 1]; matrix: [r]).
A layer whose factorized form would not have fewer parameters than the dense one stays dense and is
reported with ``extra["skipped"] = "no parameter saving"``.

Initializations (first = default)
---------------------------------
* ``random``: the factors are drawn from zero-mean Gaussians whose scale is chosen so that the
  reconstructed weight has the standard deviation of the dense layer's own initialization (measured
  from its weights); for tucker and cp this is tltorch's ``FactorizedTensor.normal_``, for tt the same
  rule written here (tltorch's TT ``normal_`` is off by a factor sqrt(r_1...r_{d-1})), for matrix
  U, V ~ N(0, (std^2 / r)^(1/2)). The bias keeps the dense layer's initialization. Measured output std
  of a 128->128 3x3 conv at ranks 0.1-0.5: within about 0.7-1.2x of the dense layer's (heavier tails
  at low rank).
* ``decompose``: the dense layer as built (its usual init) is decomposed at the resolved rank with
  tensorly: Tucker by HOOI (``tensorly.decomposition.tucker``, SVD start, ``decompose_iters`` sweeps);
  CP by ALS (``parafac``) from a seeded random start with ``decompose_iters`` sweeps (capped because CP-ALS
  of a 512x512x3x3 kernel costs seconds to tens of seconds per sweep here; see the notes); TT by TT-SVD
  (``tensor_train``); matrix by the truncated SVD (factors U_r S_r and V_r as a standard SVD gives them).
  The factors are used as the decomposition returns them (orthonormal Tucker factors with the energy in
  the core, left-orthonormal TT cores), except CP: ALS leaves an arbitrary scale per factor (after two
  sweeps from a random start one factor was 100x smaller than the others and LeNet training diverged at
  lr 0.05), so its components are normalized and each weight lambda_k split as lambda_k^(1/d).
  Caveat: at ranks above the mode sizes (the usual case for conv kernels) CP-ALS of a random kernel is
  degenerate: the components partly cancel (sum of lambda_k^2 several times ||W||^2 after two sweeps),
  and LeNet5 trained from CP ``decompose`` is slow and seed-sensitive (accuracy 0.11-0.82 after 3
  epochs at lr 0.02 on 2,000 images, where ``spectral`` gave 0.65-0.86). A ridge term (tensorly's
  ``l2_reg``) curbs the cancellation but its effect depends on the kernel's scale and shape, so none is
  used.
* ``spectral`` (Khodak et al., ICLR 2021): factors from a truncated SVD of the standard full init, with
  the singular values split evenly: matrix U_r S_r^(1/2), V_r S_r^(1/2). Analogues for the tensor
  formats: tucker = truncated HOSVD (tensorly ``tucker`` without HOOI sweeps), each factor scaled by the
  square root of its mode's HOSVD singular values and the core by their inverse square roots (for a matrix
  exactly Khodak's split); tt = TT-SVD brought to the form where every bond's singular values are split
  as square roots between the two neighbouring cores (for two cores exactly Khodak's split); cp = ALS
  started from tensorly's SVD-based (spectral) initialization (factor i = leading left singular vectors of
  the mode-i unfolding), ``decompose_iters`` sweeps, components balanced as for ``decompose``.

Cost of ``prepare`` for VGG16 here (2 cores, idle, default ``decompose_iters=2``): tucker 6-13 s, tt 3-5 s,
matrix 3 s for either init at compression 0.5 or 0.9; cp 17-23 s at compression 0.9 and about 105 s at
0.5 (ranks around 1150 for the 512-channel convs; one CP-ALS sweep there costs 5-25 s). The SVD-based
decompositions run single-threaded (see ``harness.toolkit.single_threaded``), CP's ALS with all threads.

``decompose`` and ``spectral`` reproduce the dense layer exactly at full rank (tucker, tt, matrix; not CP,
whose ALS is capped and whose full rank is only the parameter-parity rank). Every format at rank 1.0 has
at least as many parameters as the dense layer, so ``prepare`` keeps such layers dense; ``factorize``
builds them anyway (used by the tests).

Modules: ``params`` (the parameters and their validation), ``formats`` (the formats), ``layers`` (the
layer modules), ``algebra`` (free tensor-algebra functions) and ``method`` (the method and its registration).
"""

from .algebra import balanced_cp, balanced_tt, balanced_tucker
from .formats import CP, FORMATS, TT, Format, Matrix, Tucker
from .layers import MatrixConv2d, MatrixLinear, TensorConv2d, TensorLinear
from .method import (
    INITIALIZATIONS,
    CPMethod,
    FixedRankMethod,
    LayerPlan,
    MatrixMethod,
    TTMethod,
    TuckerMethod,
    fixed_rank_method,
)
from .params import FixedRankParams, ModesParams

__all__ = [
    "CP",
    "FORMATS",
    "INITIALIZATIONS",
    "TT",
    "CPMethod",
    "FixedRankMethod",
    "FixedRankParams",
    "Format",
    "LayerPlan",
    "Matrix",
    "MatrixConv2d",
    "MatrixLinear",
    "MatrixMethod",
    "ModesParams",
    "TTMethod",
    "TensorConv2d",
    "TensorLinear",
    "Tucker",
    "TuckerMethod",
    "balanced_cp",
    "balanced_tt",
    "balanced_tucker",
    "fixed_rank_method",
]
