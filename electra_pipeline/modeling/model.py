"""ELECTRA in plain PyTorch: embeddings, encoder, generator, discriminator, task heads.

Reading order follows the data: Embeddings -> SelfAttention -> FeedForward -> Layer ->
ElectraModel (embeddings + encoder) -> Generator / Discriminator -> fine-tuning heads. The joint
pre-training module that ties generator and discriminator is `pretrainer.ElectraPretrainer`. Single-device only; distributed wrapping lives in
`distributed.py`. Module names mirror Hugging Face's ELECTRA except the fused `qkv` projection;
`hf.py` converts both ways.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from electra_pipeline.modeling.config import POOLINGS, ModelConfig


class Embeddings(nn.Module):
    """Token + position + token-type embeddings and LayerNorm: the part generator and
    discriminator share (REFERENCE.md)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.embedding_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.embedding_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.embedding_size)
        self.LayerNorm = nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        # input_ids, token_type_ids: (B, T) -> (B, T, E)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head slopes 2^-h, h = 1..n: ALiBi's slopes for eight heads (Press et al. 2022), the
    first n of them. ALiBi proper spreads 2^(-8h/n) over n heads, which leaves a model with two
    heads no locality to start from (slopes 1/16 and 1/256); measured on the 8k-vocabulary
    corpus, a 2-layer model then sat on the unigram plateau exactly as with absolute positions
    alone, and left it within 400 steps with slopes from 1/2."""
    return torch.tensor([2.0 ** -h for h in range(1, num_heads + 1)])


class SelfAttention(nn.Module):
    """Multi-head attention with one fused QKV matmul and PyTorch's SDPA kernels (`cpu_paths`
    swaps in a faster dropout for CPU training).

    With `relative_attention` = K > 0 each head adds a learned bias per relative distance
    (clipped to +-K) to its scores, initialised to -slope x |distance| (ALiBi's form,
    bidirectional as in MosaicBERT; slopes in `alibi_slopes`). A scalar per distance gets a direct, consistent gradient, so the model
    can attend to its neighbours from the first steps instead of first aligning absolute
    position embeddings through the query and key projections: what keeps small budgets on the
    unigram plateau."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.attention_dropout = cfg.attention_dropout
        self.pre_layer_norm = cfg.pre_layer_norm
        self.max_distance = cfg.relative_attention
        if self.max_distance:
            d = torch.arange(-self.max_distance, self.max_distance + 1).abs().float()
            self.relative_bias = nn.Parameter(-alibi_slopes(cfg.num_heads)[:, None] * d)  # (nh, 2K+1)

    def position_bias(self, T: int, rows: slice = slice(None)) -> torch.Tensor | None:
        """(1, nh, T_q, T) additive scores for the query rows `rows` of a length-T input, or None."""
        if not self.max_distance:
            return None
        pos = torch.arange(T, device=self.relative_bias.device)
        rel = (pos[None, :] - pos[rows, None]).clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.relative_bias[:, rel][None]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """PyTorch's SDPA, dropout on the probabilities in training: (B, nh, T, hd) -> (B, nh, T, hd)."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                              dropout_p=self.attention_dropout if self.training else 0.0)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, H = x.shape
        h = self.LayerNorm(x) if self.pre_layer_norm else x
        q, k, v = self.qkv(h).view(B, T, 3, self.num_heads, H // self.num_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hd)
        bias = self.position_bias(T)
        if bias is not None:  # one additive float mask: distances, and padding at -inf-ish
            bias = bias.to(q.dtype)
            attn_mask = bias if attn_mask is None else torch.where(attn_mask, bias, torch.finfo(q.dtype).min)
        y = self.attend(q, k, v, attn_mask)
        y = self.dropout(self.dense(y.transpose(1, 2).reshape(B, T, H)))
        return x + y if self.pre_layer_norm else self.LayerNorm(x + y)  # post-LN: BERT/ELECTRA


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.intermediate = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.pre_layer_norm = cfg.pre_layer_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_layer_norm:
            return x + self.dropout(self.output(F.gelu(self.intermediate(self.LayerNorm(x)))))
        return self.LayerNorm(x + self.dropout(self.output(F.gelu(self.intermediate(x)))))


class Layer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        return self.ffn(self.attention(x, attn_mask))


def attention_bias(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) 1/0 padding mask -> (B, 1, 1, T) boolean SDPA mask (True = attend).

    Checking whether anything is padded would sync the host, so only an absent mask skips it."""
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]


class ElectraModel(nn.Module):
    """Embeddings (+ projection to the hidden width when they differ) and the encoder stack.

    `embeddings` may be passed in so a generator can share the discriminator's."""

    def __init__(self, cfg: ModelConfig, embeddings: Embeddings | None = None):
        super().__init__()
        self.config = cfg
        self.embeddings = embeddings if embeddings is not None else Embeddings(cfg)
        self.embeddings_project = (nn.Linear(cfg.embedding_size, cfg.hidden_size)
                                   if cfg.embedding_size != cfg.hidden_size else None)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        # pre-LN leaves the residual stream unnormalised: one LayerNorm after the last layer
        self.final_LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.pre_layer_norm else None

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        # (B, T) ids -> (B, T, H) input of the first layer
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        return self.embeddings_project(x) if self.embeddings_project is not None else x

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        # (B, T) ids -> (B, T, H) hidden states
        x = self.embed(input_ids, token_type_ids)
        mask = attention_bias(attention_mask)
        for layer in self.layers:
            x = layer(x, mask)
        return self.final_LayerNorm(x) if self.final_LayerNorm is not None else x

    def hidden_states(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                      attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The (B, T, H) states after the embeddings and after every layer (num_layers + 1), as
        probes read them; a pre-LN stack's states are normalised by its final LayerNorm, the
        last one as `forward` returns it."""
        x = self.embed(input_ids, token_type_ids)
        mask = attention_bias(attention_mask)
        norm = self.final_LayerNorm if self.final_LayerNorm is not None else (lambda h: h)
        states = [norm(x)]
        for layer in self.layers:
            x = layer(x, mask)
            states.append(norm(x))
        return states


class GeneratorHead(nn.Module):
    """dense(hidden -> embedding) + GELU + LayerNorm; logits = h @ E^T + bias (tied E)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.embedding_size)
        self.LayerNorm = nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        # h: (N, Hg) -> logits (N, V)
        return F.linear(self.LayerNorm(F.gelu(self.dense(h))), word_embeddings, self.bias)


class Generator(nn.Module):
    """Small masked-LM. Logits are computed only at the requested positions: the vocabulary
    projection over every token would cost more than the rest of the generator."""

    def __init__(self, cfg: ModelConfig, embeddings: Embeddings | None = None):
        super().__init__()
        self.electra = ElectraModel(cfg, embeddings)
        self.head = GeneratorHead(cfg)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                attention_mask: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor:
        # positions: (B, P) indices into T -> logits (B, P, V)
        h = self.electra(input_ids, token_type_ids, attention_mask)  # (B, T, Hg)
        h = torch.gather(h, 1, positions[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, Hg)
        return self.head(h, self.electra.embeddings.word_embeddings.weight)


class SelectionHead(nn.Module):
    """dense(hidden -> embedding) + GELU + LayerNorm, then a dot product with each candidate's
    embedding: one score per candidate (TEAMS' multi-word selection head; MC-BERT's cloze)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.embedding_size)
        self.LayerNorm = nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps)

    def forward(self, h: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        # h (..., H); candidates (..., k, E) embeddings -> scores (..., k)
        x = self.LayerNorm(F.gelu(self.dense(h)))
        return torch.matmul(candidates, x[..., None].to(candidates.dtype)).squeeze(-1)


class DeltaEmbedding(nn.Module):
    """DeBERTa-v3's gradient-disentangled embedding sharing (He et al. 2021, arXiv 2111.09543):
    the table is stop-gradient(`base`) + a zero-initialised delta, so the losses of the model that
    reads it train only the delta while `base` (the generator's table) learns from the MLM alone.
    `base` belongs to the generator and is not registered here."""

    def __init__(self, base: nn.Embedding):
        super().__init__()
        object.__setattr__(self, "base", base)
        self.padding_idx = base.padding_idx
        self.delta = nn.Parameter(torch.zeros_like(base.weight))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight.detach() + self.delta

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight, self.padding_idx)


class DiscriminatorHead(nn.Module):
    """dense(hidden) + GELU + dense(1): one replaced/original logit per token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dense_prediction = nn.Linear(cfg.hidden_size, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(F.gelu(self.dense(h))).squeeze(-1)  # (B, T)


class Discriminator(nn.Module):
    """The model users keep: encoder + replaced-token-detection head."""

    def __init__(self, cfg: ModelConfig, embeddings: Embeddings | None = None):
        super().__init__()
        self.electra = ElectraModel(cfg, embeddings)
        self.head = DiscriminatorHead(cfg)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.electra(input_ids, token_type_ids, attention_mask))  # (B, T) logits


def init_weights(module: nn.Module, std: float) -> None:
    """BERT initialisation: N(0, std) for matrices and embeddings, zeros for biases, ones for LN."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --- fine-tuning heads ---------------------------------------------------------------------


class ClassificationHead(nn.Module):
    """Dropout + linear on a pooled vector; num_labels = 1 means regression (STS-B).

    `pooling`: "cls" reads the [CLS] row (the paper, REFERENCE.md); "mean" averages the final
    hidden states of the non-padding tokens (Sentence-BERT's pooling). Mean pooling hands the
    head every token's representation, which is what a pre-trained discriminator trained every
    token for; its [CLS] row was only ever asked "replaced?" of a token never replaced."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        # h (B, T, H), attention_mask (B, T) 1/0 -> (B, num_labels)
        if self.pooling == "cls":
            pooled = h[:, 0]
        elif attention_mask is None:
            pooled = h.mean(1)
        else:
            w = attention_mask.to(h.dtype)[..., None]  # (B, T, 1)
            pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.out_proj(self.dropout(pooled))


class ElectraForSequenceClassification(nn.Module):
    def __init__(self, cfg: ModelConfig, num_labels: int, dropout: float = 0.1, pooling: str = "cls"):
        super().__init__()
        self.config = cfg
        self.num_labels = num_labels
        self.electra = ElectraModel(cfg)
        self.classifier = ClassificationHead(cfg.hidden_size, num_labels, dropout, pooling)
        init_weights(self.classifier, cfg.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.electra(input_ids, token_type_ids, attention_mask), attention_mask)


class ElectraForQuestionAnswering(nn.Module):
    """Start/end logits per token; with `answerability` (SQuAD 2.0) also a has-answer logit
    from [CLS], as the reference code's v2 head."""

    def __init__(self, cfg: ModelConfig, answerability: bool = False):
        super().__init__()
        self.config = cfg
        self.electra = ElectraModel(cfg)
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)
        self.answerable = nn.Linear(cfg.hidden_size, 1) if answerability else None
        init_weights(self.qa_outputs, cfg.initializer_range)
        if self.answerable is not None:
            init_weights(self.answerable, cfg.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        h = self.electra(input_ids, token_type_ids, attention_mask)  # (B, T, H)
        start, end = self.qa_outputs(h).unbind(-1)  # (B, T) each
        out = {"start_logits": start, "end_logits": end}
        if self.answerable is not None:
            out["answerable_logits"] = self.answerable(h[:, 0]).squeeze(-1)  # (B,)
        return out


def count_parameters(module: nn.Module) -> int:
    """Unique parameters (shared embeddings counted once)."""
    return sum(p.numel() for p in module.parameters())
