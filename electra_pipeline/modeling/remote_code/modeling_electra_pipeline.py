"""ELECTRA as the electra-pipeline project trains it, for transformers' Auto classes.

Transformers' ELECTRA is post-LayerNorm with absolute positions only. This model also computes
what the project's checkpoints may use instead: pre-LayerNorm (a LayerNorm before each sublayer
and one after the last layer) and a learned per-head bias per relative distance added to the
attention scores. Parameter names are transformers' ELECTRA names plus `relative_bias` and
`final_LayerNorm`, so it reads the same `model.safetensors`. It computes what the project's
`electra_pipeline.modeling.model` computes (a test holds the two to 1e-5). Self-contained: imports only
torch and transformers.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput
from transformers.utils import ModelOutput

from .configuration_electra_pipeline import ElectraPipelineConfig


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head slopes 2^-h, h = 1..n: the initial relative bias is -slope x |distance|."""
    return torch.tensor([2.0 ** -h for h in range(1, num_heads + 1)])


class ElectraPipelineEmbeddings(nn.Module):
    """Token + absolute position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.embedding_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        # (B, T) -> (B, T, E)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class ElectraPipelineSelfAttention(nn.Module):
    """Query/key/value projections and scaled dot-product attention, with the relative bias."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.max_distance = config.relative_attention
        if self.max_distance:
            self.relative_bias = nn.Parameter(self.initial_bias())  # (nh, 2K+1)

    def initial_bias(self) -> torch.Tensor:
        d = torch.arange(-self.max_distance, self.max_distance + 1).abs().float()
        return -alibi_slopes(self.num_heads)[:, None] * d

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # h (B, T, H), mask (B, 1, 1, T) bool (True: attend) or None -> (B, T, H)
        B, T, H = h.shape
        q, k, v = (p(h).view(B, T, self.num_heads, H // self.num_heads).transpose(1, 2)
                   for p in (self.query, self.key, self.value))  # 3 x (B, nh, T, hd)
        if self.max_distance:  # one additive float mask: the distance bias, padding at the dtype's minimum
            pos = torch.arange(T, device=h.device)
            rel = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance) + self.max_distance
            bias = self.relative_bias[:, rel][None].to(q.dtype)  # (1, nh, T, T)
            mask = bias if mask is None else torch.where(mask, bias, torch.finfo(q.dtype).min)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.attention_dropout if self.training else 0.0)
        return y.transpose(1, 2).reshape(B, T, H)


class ElectraPipelineSelfOutput(nn.Module):
    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)


class ElectraPipelineAttention(nn.Module):
    """Attention sublayer: post-LN `LN(x + attn(x))` or pre-LN `x + attn(LN(x))`."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.self = ElectraPipelineSelfAttention(config)
        self.output = ElectraPipelineSelfOutput(config)
        self.pre_layer_norm = config.pre_layer_norm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out = self.output
        y = out.dropout(out.dense(self.self(out.LayerNorm(x) if self.pre_layer_norm else x, mask)))
        return x + y if self.pre_layer_norm else out.LayerNorm(x + y)


class ElectraPipelineIntermediate(nn.Module):
    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)


class ElectraPipelineOutput(nn.Module):
    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)


class ElectraPipelineLayer(nn.Module):
    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.attention = ElectraPipelineAttention(config)
        self.intermediate = ElectraPipelineIntermediate(config)
        self.output = ElectraPipelineOutput(config)
        self.pre_layer_norm = config.pre_layer_norm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)
        out = self.output
        h = out.LayerNorm(x) if self.pre_layer_norm else x
        y = out.dropout(out.dense(F.gelu(self.intermediate.dense(h))))
        return x + y if self.pre_layer_norm else out.LayerNorm(x + y)


class ElectraPipelineEncoder(nn.Module):
    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.layer = nn.ModuleList(ElectraPipelineLayer(config) for _ in range(config.num_hidden_layers))


class ElectraPipelinePreTrainedModel(PreTrainedModel):
    config_class = ElectraPipelineConfig
    base_model_prefix = "electra"

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ElectraPipelineSelfAttention) and module.max_distance:
            if not getattr(module.relative_bias, "_is_hf_initialized", False):  # never overwrite loaded weights
                with torch.no_grad():
                    module.relative_bias.copy_(module.initial_bias())


class ElectraPipelineModel(ElectraPipelinePreTrainedModel):
    """Embeddings (+ projection to the hidden width when they differ), the layers, and with
    pre-LN a final LayerNorm. `hidden_states` (with output_hidden_states) holds the embeddings'
    output and every layer's, each through the final LayerNorm when there is one."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__(config)
        self.embeddings = ElectraPipelineEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = ElectraPipelineEncoder(config)
        if config.pre_layer_norm:  # pre-LN leaves the residual stream unnormalised
            self.final_LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> BaseModelOutput | tuple:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        final = getattr(self, "final_LayerNorm", None)
        norm = final if final is not None else (lambda h: h)
        states = [x]
        for layer in self.encoder.layer:
            x = layer(x, mask)
            states.append(x)
        out = BaseModelOutput(last_hidden_state=norm(x),
                              hidden_states=tuple(norm(s) for s in states) if output_hidden_states else None)
        return out.to_tuple() if return_dict is False else out


@dataclass
class ElectraPipelineForPreTrainingOutput(ModelOutput):
    """loss (with labels); logits (B, T): one replaced-token logit per token."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class ElectraPipelineDiscriminatorPredictions(nn.Module):
    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(F.gelu(self.dense(h))).squeeze(-1)  # (B, T)


class ElectraPipelineForPreTraining(ElectraPipelinePreTrainedModel):
    """The discriminator: encoder + replaced-token-detection head."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__(config)
        self.electra = ElectraPipelineModel(config)
        self.discriminator_predictions = ElectraPipelineDiscriminatorPredictions(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> ElectraPipelineForPreTrainingOutput | tuple:
        enc = self.electra(input_ids, attention_mask, token_type_ids, output_hidden_states)
        logits = self.discriminator_predictions(enc.last_hidden_state)
        loss = None
        if labels is not None:  # labels (B, T): 1 replaced, 0 original; padding excluded
            keep = attention_mask.bool() if attention_mask is not None else torch.ones_like(labels, dtype=torch.bool)
            loss = F.binary_cross_entropy_with_logits(logits[keep], labels[keep].float())
        out = ElectraPipelineForPreTrainingOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states)
        return out.to_tuple() if return_dict is False else out


class ElectraPipelineGeneratorPredictions(nn.Module):
    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(h)))


class ElectraPipelineLMBias(nn.Module):
    """The output bias of the masked-LM head; its weight is the word-embedding table itself."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))


class ElectraPipelineForMaskedLM(ElectraPipelinePreTrainedModel):
    """The generator: encoder + masked-LM head whose output weight is the word embeddings."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__(config)
        self.electra = ElectraPipelineModel(config)
        self.generator_predictions = ElectraPipelineGeneratorPredictions(config)
        self.generator_lm_head = ElectraPipelineLMBias(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ElectraPipelineLMBias) and not getattr(module.bias, "_is_hf_initialized", False):
            with torch.no_grad():
                module.bias.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None) -> MaskedLMOutput | tuple:
        enc = self.electra(input_ids, attention_mask, token_type_ids, output_hidden_states)
        table = self.electra.embeddings.word_embeddings.weight  # (V, E)
        logits = F.linear(self.generator_predictions(enc.last_hidden_state), table, self.generator_lm_head.bias)
        loss = None if labels is None else F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        out = MaskedLMOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states)  # labels -100: ignored
        return out.to_tuple() if return_dict is False else out


class ElectraPipelineClassificationHead(nn.Module):
    """Transformers' ELECTRA classification head: dense + GELU + dense on the [CLS] row."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__()
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(p)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h (B, T, H) -> (B, num_labels)
        return self.out_proj(self.dropout(F.gelu(self.dense(self.dropout(h[:, 0])))))


class ElectraPipelineForSequenceClassification(ElectraPipelinePreTrainedModel):
    """Encoder + a newly initialised classification head, to fine-tune with transformers.
    num_labels 1 is regression (mean squared error), more is classification (cross-entropy)."""

    def __init__(self, config: ElectraPipelineConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.electra = ElectraPipelineModel(config)
        self.classifier = ElectraPipelineClassificationHead(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> SequenceClassifierOutput | tuple:
        enc = self.electra(input_ids, attention_mask, token_type_ids, output_hidden_states)
        logits = self.classifier(enc.last_hidden_state)
        loss = None
        if labels is not None:
            loss = (F.mse_loss(logits.squeeze(-1), labels.float()) if self.num_labels == 1
                    else F.cross_entropy(logits, labels.view(-1)))
        out = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states)
        return out.to_tuple() if return_dict is False else out
