"""Pruning baselines: SNIP, GraSP and iterative magnitude pruning (IMP) with rewinding.

Three methods, registered as ``snip``, ``grasp`` and ``imp``. Each trains the dense architecture whose selected
layers lose a fraction ``sparsity`` of their weights: ``ceil(sparsity * N)`` of the ``N`` weights of all selected
layers together (global pruning, as in the three papers), chosen before the loop through the engine's
``Method.before_training`` hook (:mod:`harness.session`). Masks are ``torch.nn.utils.prune``'s
(``global_unstructured`` with a lowest-score rule, :mod:`.masks`): a pruned layer applies
``weight_orig * weight_mask``, so a pruned weight stays exactly zero whatever momentum and weight decay do to
``weight_orig``. Layers: ``layers`` patterns as the factorized methods take them, by default every conv and linear
layer except the first conv and the last linear (the papers prune every layer: ``layers: [["*"]]`` does);
biases, BatchNorm and unselected layers are never pruned. Initializations: those of ``full`` (``pytorch``, the
default, ``kaiming_normal``, ``xavier_normal``, ``orthogonal``).

* ``snip`` (Lee et al., ICLR 2019): connection sensitivity ``|g * w|`` at initialization, ``g = dL/dw`` the
  gradient of the mean loss over ``score_batches`` training batches (default 1, the paper's single batch; more
  batches average the gradient); the lowest scores are removed in one shot. The paper normalises the scores by
  their sum, which does not change which are lowest.
* ``grasp`` (Wang et al., ICLR 2020): score ``S = -w * (H g)`` at initialization, ``H g`` the Hessian-gradient
  product of the same mean loss by double backpropagation, over every trainable parameter (the whole model's
  gradient norm); the **highest** scores are removed, as in the paper. Not taken from the authors' code: its
  temperature (logits divided by 200 before the loss) and its class-balanced sample of 10 images per class; here
  the loss is the run's own on ``score_batches`` shuffled batches.
* ``imp`` (Frankle & Carbin, ICLR 2019; rewinding: Frankle et al., ICML 2020): ``rounds`` times, train the whole
  schedule, remove the smallest-magnitude remaining weights over all selected layers so that after round ``r`` a
  fraction ``(1 - sparsity) ** (r / rounds)`` is left (after the last exactly ``N - ceil(sparsity * N)``), and
  rewind every parameter and buffer to its value at iteration ``rewind`` of the first pass (an int: that step, 0
  being the initialization; a float: that fraction of the pass's steps, rounded down); the loop then trains the
  final sparse network. Deviations: every pass, the final one included, trains the whole schedule from the
  rewound weights with a fresh optimizer and the learning-rate schedule from its start (the paper trains the
  ``T - k`` iterations after the rewinding point, the schedule resumed there); the per-round rate follows from
  ``sparsity`` and ``rounds`` (the paper prunes 20% per round for as many rounds as it takes).

  Cost: the run trains ``rounds + 1`` full passes. Its epochs, seconds and steps as stored are the final pass's
  (the loop); ``total_epochs``, ``total_steps`` and ``total_train_seconds`` count all of them, and
  ``before_training`` in the run's metrics holds one record per round (epochs, steps, seconds, final train loss,
  the sparsity it trained at and its test accuracy, the sparsity after its pruning, the rewinding step). The
  engine does not checkpoint runs: a killed IMP run is trained again from the start on the next ``harness run``
  (the store has it pending; nothing is stored twice), so finished rounds are trained again.

Modules: ``params`` (the parameters and their validation), ``masks`` (prunable weights, global lowest-score
pruning, rewinding, saving and loading pruned models), ``scores`` (SNIP and GraSP scores), ``method`` (the methods).
"""

from .masks import LowestScores, load_pruned_state, make_permanent, prunable, prune_lowest, removal_count, rewind
from .method import GraSPMethod, IMPMethod, PruningMethod, SNIPMethod
from .params import IMPParams, PruningParams, ScoreParams
from .scores import grasp_scores, snip_scores

__all__ = [
    "GraSPMethod",
    "IMPMethod",
    "IMPParams",
    "LowestScores",
    "PruningMethod",
    "PruningParams",
    "SNIPMethod",
    "ScoreParams",
    "grasp_scores",
    "load_pruned_state",
    "make_permanent",
    "prunable",
    "prune_lowest",
    "removal_count",
    "rewind",
    "snip_scores",
]
