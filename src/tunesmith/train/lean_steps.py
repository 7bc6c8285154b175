"""The HF Trainer's per-step bookkeeping without walking the whole module tree every step.

A peft model is several hundred modules (507 for a 6-layer Llama with LoRA on every linear layer), and every
step the Trainer walks all of them twice just to find parameters: `floating_point_ops` counts them again
(num_parameters, 1.1 ms here) and gradient clipping lists all of them, frozen ones included (0.65 ms). Neither
set changes during a run, so both are listed once. The results are the Trainer's own: the same FLOP count, and
the same norm (frozen parameters have no gradient, and clipping skips parameters without one).
"""

from __future__ import annotations

from accelerate.utils import DistributedType

# where accelerate clips the parameters it is given; FSDP and DeepSpeed clip through the wrapped model
_CLIPS_GIVEN_PARAMETERS = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


class LeanSteps:
    """Mixin for transformers.Trainer subclasses (put it first among the bases)."""

    _non_embedding_parameters: int | None = None
    _trained_parameters: tuple[int, list] | None = None

    def floating_point_ops(self, inputs) -> int:
        """6 x input tokens x non-embedding parameters, as Trainer.floating_point_ops, with the count made once."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._non_embedding_parameters is None:
            self._non_embedding_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._non_embedding_parameters

    def _clip_grad_norm(self, model):
        """Trainer._clip_grad_norm over the parameters that get gradients, listed once per model object."""
        if self.accelerator.distributed_type not in _CLIPS_GIVEN_PARAMETERS:
            return super()._clip_grad_norm(model)
        if self._trained_parameters is None or self._trained_parameters[0] != id(model):
            self._trained_parameters = (id(model), [p for p in model.parameters() if p.requires_grad])
        return self.accelerator.clip_grad_norm_(self._trained_parameters[1], self.args.max_grad_norm)
