"""Padding-free preference batches for TRL's DPOTrainer: no compute on padding, logits only where scored.

TRL 1.16's DPOTrainer pads every batch to [2 x pairs, longest] (its `padding_free` option falls back to
padding, huggingface/trl issue 7014) and, off Triton devices, projects every position through the LM head.
Here the model's forward is wrapped: a padded batch (chosen rows, then rejected rows) is flattened into one
row with position ids restarting per sequence and the sequence boundaries (so the attention runs per sequence,
train/varlen_attention.py), only the positions whose next token is scored go through the LM head, and the
per-token log-probs are put back in the padded [rows, length - 1] layout TRL's loss code expects. Every loss
type, the reference pass and the metrics then run unchanged on identical numbers.
"""

from __future__ import annotations

from types import MethodType

IGNORE_INDEX = -100
UNUSED_PEFT_KWARGS = ("inputs_embeds", "output_attentions", "output_hidden_states", "return_dict")


def use_flat_batches(trainer) -> bool:
    """Wrap the policy (and a separate reference model) of a DPOTrainer; True when the attention runs per sequence."""
    from tunesmith.train.varlen_attention import use_varlen_attention

    policy = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    models = [policy] + ([trainer.ref_model] if getattr(trainer, "ref_model", None) is not None else [])
    per_sequence = all([use_varlen_attention(m) for m in models])
    for model in models:
        model.forward = MethodType(_flat_forward(model.forward), model)
    return per_sequence


def _flat_forward(fused_forward):
    """A forward that flattens padded preference batches before TRL's fused-head call would see them."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **kwargs):
        if not fused_lm_head or attention_mask is None or labels is None or kwargs.get("shift_labels") is not None:
            return fused_forward(
                input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=fused_lm_head, **kwargs
            )
        for name in UNUSED_PEFT_KWARGS:
            kwargs.pop(name, None)
        return flat_scores(self, input_ids, attention_mask, labels, kwargs)

    return forward


def flatten(input_ids, attention_mask, labels):
    """(ids [1, T], position ids [1, T], sequence boundaries [n + 1], flat labels [T]) of a padded batch."""
    import torch

    mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    bounds = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    positions = (mask.cumsum(dim=1) - 1)[mask]
    flat_labels = labels[mask].clone()
    flat_labels[bounds[:-1].long().clamp(max=flat_labels.numel() - 1)] = IGNORE_INDEX  # nothing predicts a first token
    return input_ids[mask].unsqueeze(0), positions.unsqueeze(0), bounds, flat_labels


def flat_scores(model, input_ids, attention_mask, labels, kwargs):
    """TRL's FusedCausalLMOutput (log_probs, entropy, mean_logits, is_top1 in the padded shifted layout) from one
    flattened forward that scores only the labelled positions."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    ids, positions, bounds, flat_labels = flatten(input_ids, attention_mask, labels)
    longest = int((bounds[1:] - bounds[:-1]).max())
    hidden = model.base_model(
        input_ids=ids,
        position_ids=positions,
        cu_seq_lens_q=bounds,
        cu_seq_lens_k=bounds,
        max_length_q=longest,
        max_length_k=longest,
        use_cache=False,
        **{k: v for k, v in kwargs.items() if k != "use_cache"},
    ).last_hidden_state[0, :-1]
    targets = flat_labels[1:]
    keep = (targets != IGNORE_INDEX).nonzero().squeeze(-1)
    logits = model.get_output_embeddings()(hidden[keep]).float()
    log_softmax = torch.log_softmax(logits, dim=-1)
    token_logps = log_softmax.gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropy = -(log_softmax.exp() * log_softmax).sum(-1)
        mean_logits = logits.mean(-1)
        is_top1 = (logits.argmax(-1) == targets[keep]).to(logits.dtype)
    to_padded = _unflattener(attention_mask, keep, targets.numel())
    log_probs = to_padded(token_logps)
    return FusedCausalLMOutput(
        loss=-token_logps.sum() / max(1, keep.numel()),
        log_probs=log_probs,
        entropy=to_padded(entropy),
        mean_logits=to_padded(mean_logits),
        is_top1=to_padded(is_top1).bool(),
        label_mask=to_padded(torch.ones_like(token_logps)).bool(),
    )


def _unflattener(attention_mask, keep, flat_shifted: int):
    """Maps values at the kept flat positions to the padded shifted layout [rows, length - 1] (zeros elsewhere)."""
    import torch

    mask = attention_mask.bool()
    flat_index = torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
    flat_index[mask] = torch.arange(int(mask.sum()), device=mask.device)
    source = flat_index[:, 1:] - 1  # the flat position whose next-token prediction is this token
    valid = mask[:, 1:] & (source >= 0)

    def to_padded(values):
        flat = values.new_zeros(flat_shifted).index_copy(0, keep, values)
        return torch.where(valid, flat[source.clamp(min=0)], values.new_zeros(()))

    return to_padded
