"""ELECTRA's objectives as pure functions on tensors: mask -> generate -> sample -> detect -> loss.

Each function documents its shapes; `electra_step` reads like the paper and returns a named
result. All shapes are static (a fixed per-sequence prediction budget P), so a step compiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from electra_pipeline.modeling.model import Discriminator, Generator


@dataclass
class Masked:
    """What `mask_tokens` chose. P = the per-sequence prediction budget."""

    input_ids: torch.Tensor  # (B, T) ids with [MASK] (or random ids) at chosen positions
    positions: torch.Tensor  # (B, P) long, chosen positions (padding slots point at 0)
    original: torch.Tensor  # (B, P) long, original ids at `positions`
    weights: torch.Tensor  # (B, P) float, 1 for a real prediction, 0 for a padding slot


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: torch.Tensor, *,
                mask_id: int, vocab_size: int, mask_prob: float, max_predictions: int,
                mask_token_prob: float = 0.85, random_token_prob: float = 0.0,
                rng: torch.Generator | None = None) -> Masked:
    """Choose round(mask_prob x n) of each sequence's n maskable tokens (at least 1, at most
    `max_predictions`), uniformly without replacement; never special tokens or padding.
    Of the chosen, `mask_token_prob` become [MASK], `random_token_prob` a random id, the rest
    keep their token (ELECTRA: 85/0/15).

    input_ids, attention_mask: (B, T); special_ids: (S,) ids never chosen."""
    B, T = input_ids.shape
    device = input_ids.device
    maskable = attention_mask.bool() & ~torch.isin(input_ids, special_ids)  # (B, T)
    n_tokens = maskable.sum(-1)  # (B,)
    n_predict = torch.clamp(torch.round(n_tokens.float() * mask_prob).long(), min=1, max=max_predictions)
    n_predict = torch.minimum(n_predict, n_tokens)  # (B,)
    # A uniform random subset: the top-P of iid uniform scores over the maskable positions.
    scores = torch.rand(B, T, device=device, generator=rng).masked_fill(~maskable, -1.0)
    P = min(max_predictions, T)
    top_scores, positions = scores.topk(P, dim=-1)  # (B, P), sorted by score
    slot = torch.arange(P, device=device)[None, :]
    weights = ((slot < n_predict[:, None]) & (top_scores >= 0)).float()  # (B, P)
    positions = positions * weights.long()  # padding slots point at position 0 ([CLS])
    original = torch.gather(input_ids, 1, positions)

    # Decide what each chosen position shows the generator.
    u = torch.rand(B, P, device=device, generator=rng)
    replacement = original.clone()
    replacement = torch.where(u < mask_token_prob, torch.full_like(original, mask_id), replacement)
    if random_token_prob > 0:
        rand_ids = torch.randint(0, vocab_size, (B, P), device=device, generator=rng)
        is_random = (u >= mask_token_prob) & (u < mask_token_prob + random_token_prob)
        replacement = torch.where(is_random, rand_ids, replacement)
    replacement = torch.where(weights.bool(), replacement, original)  # padding slots unchanged
    masked_ids = input_ids.scatter(1, positions, replacement)
    return Masked(input_ids=masked_ids, positions=positions, original=original, weights=weights)


def sample_tokens(logits: torch.Tensor, temperature: float = 1.0,
                  rng: torch.Generator | None = None) -> torch.Tensor:
    """One id per row of (..., V) logits, an exact sample from softmax(logits/t), in fp32 and
    without gradient (torch's gumbel_softmax is unsafe in half precision).

    Two ways to the same distribution. On the CPU in eager mode, inverse-CDF sampling: softmax,
    running sum, one uniform draw a row, a binary search: the CPU's serial random generator
    then draws B*P numbers, not B*P*V (at (16, 19, 30522): 24 vs 49 ms). Elsewhere Gumbel-max,
    argmax(logits/t + Gumbel), elementwise, which fuses on the GPU and under torch.compile.
    Under torch.compile the default generator is used instead of `rng` (a Generator argument
    would break the graph); it is checkpointed like `rng`."""
    with torch.no_grad():
        if torch.compiler.is_compiling():
            rng = None
        logits = logits.detach().float()
        if temperature != 1.0:
            logits = logits / temperature
        if logits.device.type == "cpu" and not torch.compiler.is_compiling():
            return _inverse_cdf_sample(logits, rng)
        return _gumbel_max_sample(logits, rng)


def _inverse_cdf_sample(logits: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
    cdf = logits.softmax(-1).cumsum_(-1)  # (..., V), one buffer
    u = torch.rand(cdf.shape[:-1] + (1,), device=cdf.device, generator=rng) * cdf[..., -1:]
    # right=True: the first id whose running sum exceeds u, so zero-probability ids never win
    return torch.searchsorted(cdf, u, right=True).clamp_max_(cdf.shape[-1] - 1).squeeze(-1)


def _gumbel_max_sample(logits: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
    # The noise is built in place in one (..., V) buffer: at (B, P, 30522) fresh temporaries
    # cost more than the arithmetic (255 -> 90 ms per CPU step).
    g = torch.rand(logits.shape, device=logits.device, generator=rng)
    g.clamp_min_(1e-9).log_().neg_().clamp_min_(1e-9).log_().neg_()  # Gumbel(0, 1) = -log(-log u)
    return g.add_(logits).max(-1).indices  # the first maximum, as argmax, 2x faster on CPU


def replace_tokens(masked: Masked, sampled: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Put the generator's samples at the chosen positions; label a token 1 (replaced) only
    where it differs from the original, so a correct sample counts as original.

    sampled: (B, P); input_ids: (B, T) originals -> (fake_ids (B, T), labels (B, T) float)."""
    sampled = torch.where(masked.weights.bool(), sampled, masked.original)
    fake = masked.input_ids.scatter(1, masked.positions, sampled)
    # Positions kept unmasked still show the original, so comparing to it is exact everywhere.
    labels = (fake != input_ids).float()
    return fake, labels


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over real predictions. logits (B, P, V); targets, weights (B, P)."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (ce * weights.flatten()).sum() / weights.sum().clamp_min(1e-6)


def rtd_loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE over all non-padding tokens. logits, labels, attention_mask: (B, T)."""
    w = attention_mask.float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    return (bce * w).sum() / w.sum().clamp_min(1e-6)


def hidden_accuracy(logits: torch.Tensor, masked: Masked) -> torch.Tensor:
    """Top-1 accuracy at the chosen positions whose token the model could not see ([MASK] or a
    random id). The kept 15% show their own token, and counting them would credit copying: a
    generator at the unigram plateau scores ~19% over all chosen positions and ~4% here."""
    shown = masked.input_ids.gather(1, masked.positions)  # (B, P) what the model saw there
    w = masked.weights * (shown != masked.original).float()
    return ((logits.max(-1).indices == masked.original).float() * w).sum() / w.sum().clamp_min(1)


@dataclass
class StepOutput:
    """Loss to backpropagate plus detached metric tensors (read them every N steps: no sync)."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


def electra_step(generator: Generator, discriminator: Discriminator, batch: dict[str, torch.Tensor],
                 masked: Masked, *,
                 gen_weight: float = 1.0, disc_weight: float = 50.0, temperature: float = 1.0,
                 rng: torch.Generator | None = None, pad_free: bool = False,
                 rtd_masked_only: bool = False) -> StepOutput:
    """One joint forward: generator fills the masks, samples replace them (no gradient through
    sampling), the discriminator labels every token; loss = gen_weight x MLM + disc_weight x RTD.

    `rtd_masked_only`: the paper's "ELECTRA 15%" ablation (Clark et al. 2020, section 3.2): the
    discriminator still reads every token, but its loss comes only from the masked positions,
    which isolates how much ELECTRA gains from learning on all tokens.

    `pad_free`: the caller knows no row is padded, so the encoders run without an attention mask
    (flash attention on CUDA); the losses still weight by `attention_mask`."""
    tt, am = batch["token_type_ids"], batch["attention_mask"]
    enc_mask = None if pad_free else am
    gen_logits, gen_loss, fake_ids, labels = _generate(generator, masked, batch, enc_mask, temperature, rng)
    disc_logits = discriminator(fake_ids, tt, enc_mask)  # (B, T)
    if rtd_masked_only:
        disc_loss = rtd_loss(disc_logits.gather(1, masked.positions), labels.gather(1, masked.positions),
                             masked.weights)
    else:
        disc_loss = rtd_loss(disc_logits, labels, am)
    loss = gen_weight * gen_loss + disc_weight * disc_loss
    with torch.no_grad():
        metrics = {"loss/total": loss.detach(), "loss/gen": gen_loss.detach(), "loss/disc": disc_loss.detach(),
                   "gen/accuracy": hidden_accuracy(gen_logits, masked), **_rtd_metrics(disc_logits, labels, am)}
    return StepOutput(loss=loss, metrics=metrics)


def mlm_step(mlm_model: Generator, batch: dict[str, torch.Tensor], masked: Masked, pad_free: bool = False) -> StepOutput:
    """The BERT baseline: one MLM model, loss on the masked positions only."""
    logits = mlm_model(masked.input_ids, batch["token_type_ids"], None if pad_free else batch["attention_mask"],
                       masked.positions)
    loss = mlm_loss(logits, masked.original, masked.weights)
    with torch.no_grad():
        acc = hidden_accuracy(logits, masked)
    return StepOutput(loss=loss, metrics={"loss/total": loss.detach(), "loss/gen": loss.detach(), "gen/accuracy": acc})


# --- the paper's ablations and later objectives ------------------------------------------------

def copy_mlm_loss(logits: torch.Tensor, replaced_logit: torch.Tensor, shown: torch.Tensor, targets: torch.Tensor,
                  attention_mask: torch.Tensor) -> torch.Tensor:
    """All-Tokens MLM with the paper's copy mechanism (Clark et al. 2020, section 3.2): a sigmoid
    gives each token a copy probability D, and p(x_t | x~) = D 1[x~_t = x_t] + (1 - D) softmax(logits)_x_t.
    Here D = sigmoid(-replaced_logit), so the gate is the discriminator head read as "not replaced".
    Computed in log space; mean negative log-likelihood over the non-padding tokens.

    logits (B, T, V); replaced_logit, shown, targets, attention_mask (B, T)."""
    log_softmax = logits.float().log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)  # (B, T)
    gate = replaced_logit.float()
    log_copy = F.logsigmoid(-gate).masked_fill(shown != targets, float("-inf"))  # log D where copying is right
    log_p = torch.logaddexp(log_copy, F.logsigmoid(gate) + log_softmax)
    w = attention_mask.float()
    return -(log_p * w).sum() / w.sum().clamp_min(1e-6)


def sample_candidates(logits: torch.Tensor, original: torch.Tensor, k: int,
                      rng: torch.Generator | None = None) -> torch.Tensor:
    """A candidate set per position: the original id first, then k - 1 distinct ids drawn without
    replacement from softmax(logits) with the original excluded (Gumbel top-k, as TEAMS'
    `sample_k_from_softmax`). No gradient.

    logits (..., V); original (...) -> candidates (..., k) long, `original` exactly once in each."""
    with torch.no_grad():
        noisy = logits.detach().float().clone()
        noisy.scatter_(-1, original[..., None], float("-inf"))
        g = torch.rand(noisy.shape, device=noisy.device, generator=rng)
        g.clamp_min_(1e-9).log_().neg_().clamp_min_(1e-9).log_().neg_()
        rivals = (noisy + g).topk(k - 1, dim=-1).indices  # (..., k-1), distinct, never the original
        return torch.cat([original[..., None], rivals], -1)


def select_loss(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of picking candidate 0 (the original) among k; mean over weighted positions.
    scores (N..., k); weights (N...) float."""
    target = torch.zeros(scores.shape[:-1], dtype=torch.long, device=scores.device)
    ce = F.cross_entropy(scores.float().flatten(0, -2), target.flatten(), reduction="none")
    return (ce * weights.flatten()).sum() / weights.sum().clamp_min(1e-6)


def _generate(generator: Generator, masked: Masked, batch: dict[str, torch.Tensor], enc_mask: torch.Tensor | None,
              temperature: float, rng: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                       torch.Tensor]:
    """The generator's part of every replacement objective: logits at the masked positions, its
    MLM loss, and the input with its samples in place -> (gen_logits, gen_loss, fake_ids, labels)."""
    gen_logits = generator(masked.input_ids, batch["token_type_ids"], enc_mask, masked.positions)  # (B, P, V)
    gen_loss = mlm_loss(gen_logits, masked.original, masked.weights)
    sampled = sample_tokens(gen_logits, temperature, rng)  # (B, P), no grad
    fake_ids, labels = replace_tokens(masked, sampled, batch["input_ids"])
    return gen_logits, gen_loss, fake_ids, labels


def replace_mlm_step(generator: Generator, discriminator: Discriminator, mlm_head: nn.Module,
                     batch: dict[str, torch.Tensor], masked: Masked, *, gen_weight: float = 1.0,
                     temperature: float = 1.0, rng: torch.Generator | None = None,
                     pad_free: bool = False) -> StepOutput:
    """Replace MLM (Clark et al. 2020, section 3.2): BERT's masked-LM, but the masked positions show
    generator samples instead of [MASK], so pre-training never sees a token fine-tuning lacks. The
    main model (the discriminator's encoder under `mlm_head`, an MLM head at its width tied to the
    embeddings; its RTD head is unused) predicts the originals at the masked positions only. Both
    MLM losses weigh 1, as BERT's."""
    enc_mask = None if pad_free else batch["attention_mask"]
    gen_logits, gen_loss, fake_ids, _ = _generate(generator, masked, batch, enc_mask, temperature, rng)
    h = discriminator.electra(fake_ids, batch["token_type_ids"], enc_mask)  # (B, T, H)
    h = torch.gather(h, 1, masked.positions[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, H)
    logits = mlm_head(h, discriminator.electra.embeddings.word_embeddings.weight)  # (B, P, V)
    main_loss = mlm_loss(logits, masked.original, masked.weights)
    loss = gen_weight * gen_loss + main_loss
    with torch.no_grad():
        w = masked.weights
        acc = ((logits.max(-1).indices == masked.original).float() * w).sum() / w.sum().clamp_min(1)
        metrics = {"loss/total": loss.detach(), "loss/gen": gen_loss.detach(), "loss/main": main_loss.detach(),
                   "gen/accuracy": hidden_accuracy(gen_logits, masked), "main/accuracy": acc}
    return StepOutput(loss=loss, metrics=metrics)


def all_tokens_mlm_step(generator: Generator, discriminator: Discriminator, main_head: nn.Module,
                        batch: dict[str, torch.Tensor], masked: Masked, *, gen_weight: float = 1.0,
                        temperature: float = 1.0, rng: torch.Generator | None = None,
                        pad_free: bool = False) -> StepOutput:
    """All-Tokens MLM (Clark et al. 2020, section 3.2): the input carries generator replacements as
    in ELECTRA, and the model predicts the identity of every token, not only the masked ones, through
    the copy mechanism of `copy_mlm_loss`. The discriminator's encoder reads the corrupted input; its
    RTD head is the copy gate, `main_head` (an MLM head at the discriminator's width, tied to the
    embeddings) the softmax. Both MLM losses weigh 1, as BERT's."""
    ids, tt, am = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    enc_mask = None if pad_free else am
    gen_logits, gen_loss, fake_ids, labels = _generate(generator, masked, batch, enc_mask, temperature, rng)
    h = discriminator.electra(fake_ids, tt, enc_mask)  # (B, T, H)
    replaced_logit = discriminator.head(h)  # (B, T)
    logits = main_head(h, discriminator.electra.embeddings.word_embeddings.weight)  # (B, T, V)
    main_loss = copy_mlm_loss(logits, replaced_logit, fake_ids, ids, am)
    loss = gen_weight * gen_loss + main_loss
    with torch.no_grad():
        valid = am.bool()
        metrics = {"loss/total": loss.detach(), "loss/gen": gen_loss.detach(), "loss/main": main_loss.detach(),
                   "gen/accuracy": hidden_accuracy(gen_logits, masked),
                   "main/accuracy": ((logits.argmax(-1) == ids) & valid).sum().float() / valid.sum().clamp_min(1),
                   **_rtd_metrics(replaced_logit, labels, am)}
    return StepOutput(loss=loss, metrics=metrics)


def mc_bert_step(generator: Generator, discriminator: Discriminator, select_head: nn.Module,
                 batch: dict[str, torch.Tensor], masked: Masked, *, k: int, gen_weight: float = 1.0,
                 select_weight: float = 2.0, temperature: float = 1.0, rng: torch.Generator | None = None,
                 pad_free: bool = False) -> StepOutput:
    """MC-BERT (Xu et al. 2020, arXiv 2006.05744, "Efficient Language Pre-Training via a Meta
    Controller"): the generator (the meta controller) corrupts the input as in ELECTRA and proposes
    k candidates for every position; the main model answers a multi-choice cloze test at every
    token: which candidate is the original. Each set holds the original exactly once and, where
    the token shown was replaced, the token shown (the "reject" choice: keeping what is shown is
    wrong there); the other rivals are generator samples without replacement. The generator's
    logits at the unmasked positions come without gradient (its MLM loss stays on the masked ones).
    loss = gen_weight x MLM + select_weight x selection.

    select_head(h (B, T, H), candidate embeddings (B, T, k, E)) -> scores (B, T, k)."""
    ids, tt, am = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    enc_mask = None if pad_free else am
    h_gen = generator.electra(masked.input_ids, tt, enc_mask)  # (B, T, Hg)
    table = generator.electra.embeddings.word_embeddings.weight
    at_masked = torch.gather(h_gen, 1, masked.positions[..., None].expand(-1, -1, h_gen.shape[-1]))
    gen_logits = generator.head(at_masked, table)  # (B, P, V)
    gen_loss = mlm_loss(gen_logits, masked.original, masked.weights)
    sampled = sample_tokens(gen_logits, temperature, rng)
    fake_ids, labels = replace_tokens(masked, sampled, ids)
    with torch.no_grad():
        all_logits = generator.head(h_gen.detach(), table.detach())  # (B, T, V)
        candidates = sample_candidates(all_logits, ids, k, rng)  # (B, T, k)
        replaced = fake_ids != ids
        listed = (candidates[..., 1:] == fake_ids[..., None]).any(-1)
        candidates[..., -1] = torch.where(replaced & ~listed, fake_ids, candidates[..., -1])
    h = discriminator.electra(fake_ids, tt, enc_mask)  # (B, T, H)
    scores = select_head(h, discriminator.electra.embeddings.word_embeddings(candidates))  # (B, T, k)
    main_loss = select_loss(scores, am.float())
    loss = gen_weight * gen_loss + select_weight * main_loss
    with torch.no_grad():
        valid = am.bool()
        right = (scores.argmax(-1) == 0) & valid
        metrics = {"loss/total": loss.detach(), "loss/gen": gen_loss.detach(), "loss/main": main_loss.detach(),
                   "gen/accuracy": hidden_accuracy(gen_logits, masked),
                   "main/accuracy": right.sum().float() / valid.sum().clamp_min(1),
                   "main/replaced_accuracy": (right & replaced).sum().float() / (replaced & valid).sum().clamp_min(1),
                   "disc/replaced_fraction": (labels.bool() & valid).sum().float() / valid.sum().clamp_min(1)}
    return StepOutput(loss=loss, metrics=metrics)


def teams_step(generator: Generator, discriminator: Discriminator, select_head: nn.Module,
               batch: dict[str, torch.Tensor], masked: Masked, *, k: int, gen_weight: float = 1.0,
               disc_weight: float = 50.0, select_weight: float = 2.0, temperature: float = 1.0,
               rng: torch.Generator | None = None, pad_free: bool = False) -> StepOutput:
    """TEAMS (Shen et al., Findings of ACL 2021, arXiv 2106.00139, "Training ELECTRA Augmented with
    Multi-word Selection"): ELECTRA's replaced-token detection over all tokens plus multi-word
    selection at the masked positions: pick the original among k candidates (the original and k - 1
    generator samples without replacement), scored by a dot product of the transformed hidden state
    with the candidates' embeddings. Its generator sharing the discriminator's bottom layers is
    `model.share_encoder` with `model.generator_layers`; both heads read the top layer here (the
    paper's attention-based task-specific heads are not built).
    loss = gen_weight x MLM + disc_weight x RTD + select_weight x MWS (TEAMS: 1, 5, 2)."""
    tt, am = batch["token_type_ids"], batch["attention_mask"]
    enc_mask = None if pad_free else am
    gen_logits, gen_loss, fake_ids, labels = _generate(generator, masked, batch, enc_mask, temperature, rng)
    candidates = sample_candidates(gen_logits, masked.original, k, rng)  # (B, P, k)
    h = discriminator.electra(fake_ids, tt, enc_mask)  # (B, T, H)
    disc_logits = discriminator.head(h)  # (B, T)
    disc_loss = rtd_loss(disc_logits, labels, am)
    at_masked = torch.gather(h, 1, masked.positions[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, H)
    scores = select_head(at_masked, discriminator.electra.embeddings.word_embeddings(candidates))  # (B, P, k)
    mws_loss = select_loss(scores, masked.weights)
    loss = gen_weight * gen_loss + disc_weight * disc_loss + select_weight * mws_loss
    with torch.no_grad():
        w = masked.weights
        metrics = {"loss/total": loss.detach(), "loss/gen": gen_loss.detach(), "loss/disc": disc_loss.detach(),
                   "loss/select": mws_loss.detach(), "gen/accuracy": hidden_accuracy(gen_logits, masked),
                   "select/accuracy": ((scores.argmax(-1) == 0).float() * w).sum() / w.sum().clamp_min(1),
                   **_rtd_metrics(disc_logits, labels, am)}
    return StepOutput(loss=loss, metrics=metrics)


def _rtd_metrics(disc_logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    valid = attention_mask.bool()
    pred = disc_logits > 0
    real = labels.bool()
    tp = (pred & real & valid).sum().float()
    return {"disc/accuracy": ((pred == real) & valid).sum().float() / valid.sum().clamp_min(1),
            "disc/precision": tp / (pred & valid).sum().clamp_min(1),
            "disc/recall": tp / (real & valid).sum().clamp_min(1),
            "disc/replaced_fraction": (real & valid).sum().float() / valid.sum().clamp_min(1)}
