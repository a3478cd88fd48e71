"""Configuration of an ELECTRA model trained by the electra-pipeline project.

Transformers' ELECTRA configuration plus the two architecture fields its ELECTRA lacks:
`pre_layer_norm` and `relative_attention`. Self-contained (imports only transformers), so a
directory that carries this file loads with `trust_remote_code=True` where the project is not
installed.
"""

try:
    from transformers import PreTrainedConfig
except ImportError:  # transformers 4 spells it PretrainedConfig
    from transformers import PretrainedConfig as PreTrainedConfig


class ElectraPipelineConfig(PreTrainedConfig):
    r"""
    Args:
        pre_layer_norm (`bool`): LayerNorm before each sublayer (attention, feed-forward) and one
            after the last layer; False is BERT/ELECTRA's post-LayerNorm.
        relative_attention (`int`): > 0 adds to every head's attention scores a learned bias per
            relative distance, distances clipped to +-relative_attention; 0 turns it off.
        The other fields mean what they mean in transformers' `ElectraConfig`.
    """

    model_type = "electra_pipeline"

    def __init__(self, vocab_size: int = 30522, embedding_size: int = 128, hidden_size: int = 256,
                 num_hidden_layers: int = 12, num_attention_heads: int = 4, intermediate_size: int = 1024,
                 hidden_act: str = "gelu", hidden_dropout_prob: float = 0.1, attention_probs_dropout_prob: float = 0.1,
                 max_position_embeddings: int = 512, type_vocab_size: int = 2, initializer_range: float = 0.02,
                 layer_norm_eps: float = 1e-12, pre_layer_norm: bool = False, relative_attention: int = 0,
                 classifier_dropout: float | None = None, pad_token_id: int = 0, tie_word_embeddings: bool = True,
                 **kwargs):
        if hidden_act != "gelu":
            raise ValueError(f"hidden_act must be 'gelu' (the only activation this model uses), got {hidden_act!r}")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}")
        if relative_attention < 0:
            raise ValueError(f"relative_attention must be >= 0, got {relative_attention}")
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.pre_layer_norm = bool(pre_layer_norm)
        self.relative_attention = int(relative_attention)
        self.classifier_dropout = classifier_dropout
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
