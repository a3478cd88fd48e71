"""The ONNX Runtime export graph: `explicit_attention_twin(model)`, a copy of an ELECTRA model
with the same weights and function, shaped so ONNX Runtime runs it faster on the CPU (explicit
attention with an additive mask, hidden states as (B*T, H) rows, optionally ORT's fused
`Attention` op, a [CLS]-only last layer for [CLS]-pooled heads). `export/onnx.py` exports it by
default and checks it against the original model like any export.

Heavy imports (torch) happen inside functions: `electra --help` imports this module.
"""

from __future__ import annotations

from typing import Any


def _ort_attention() -> Any:
    """`com.microsoft::Attention` (ONNX Runtime's fused multi-head attention; `QAttention` after
    int8 quantisation) as an autograd function: PyTorch computes it as written-out maths, the
    TorchScript exporter writes the one node."""
    import torch

    class OrtAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor,
                    num_heads: int) -> torch.Tensor:
            # x (B, T, H), weight (H, 3H) = [Q | K | V] columns, mask (B, T) int32 1/0 -> (B, T, H)
            B, T, H = x.shape
            hd = H // num_heads
            q, k, v = (x @ weight + bias).view(B, T, 3, num_heads, hd).permute(2, 0, 3, 1, 4)
            scores = torch.matmul(q, k.transpose(-1, -2)) * hd ** -0.5
            scores = scores + (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0  # the op's mask_filter_value
            return torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(B, T, H)

        @staticmethod
        def symbolic(g: Any, x: Any, weight: Any, bias: Any, mask: Any, num_heads: int) -> Any:
            out = g.op("com.microsoft::Attention", x, weight, bias, mask, num_heads_i=num_heads)
            out.setType(x.type())
            return out

    return OrtAttention


def explicit_attention_twin(model: Any, fused: bool = False, cls_only: bool = False) -> Any:
    """A copy of `model` shaped for ONNX Runtime on the CPU; same weights, same function (the
    export check compares it against the original). Four changes, each measured on ELECTRA-Small
    int8 at 16x128 on this project's 2-core CPU:

    - attention as written-out maths with one additive (B, 1, 1, T) mask bias instead of SDPA with
      a boolean mask, whose export carries a Where over every (B, heads, T, T) score tensor plus an
      IsNaN/Where guard for fully masked rows (~13% of int8 run time);
    - hidden states as (B*T, H) rows between layers: ORT 1.32's LayerNormalization kernel took
      2.3 ms on a (16, 128, 256) tensor and 0.5 ms on the same data as (2048, 256) (88 -> 75 ms);
    - `fused`: attention as ORT's `Attention` contrib op, which int8 quantisation turns into
      `QAttention` (one int8 QKV product, no Split/Transpose/Softmax nodes): 75 -> 67 ms. ORT's
      transformer optimiser finds no attention to fuse in this model (its patterns want separate
      Q, K, V projections and 3-D LayerNorms), and its SkipLayerNormalization was slower still;
    - `cls_only` (sequence classification and regression, whose head reads [CLS] alone): the last
      layer computes its query, attention output and feed-forward for the [CLS] row only, keys and
      values for every row; the encoder returns (B, 1, H). 67 -> 63 ms."""
    import copy

    import torch

    # ORT's fused Attention op takes no per-head distance bias: relative attention stays explicit
    attention_op = _ort_attention() if fused and not model.electra.config.relative_attention else None

    class ExplicitAttention(torch.nn.Module):
        def __init__(self, attn: Any, cls: bool = False) -> None:
            super().__init__()
            self.num_heads, self.qkv, self.dense, self.LayerNorm = attn.num_heads, attn.qkv, attn.dense, attn.LayerNorm
            self.pre_layer_norm = attn.pre_layer_norm
            self.source = attn  # for its position_bias (relative attention)
            if cls:  # for cls_row: Q and KV as their own Linear layers, weights the int8 quantiser can take
                H = self.dense.out_features
                self.q_proj, self.kv_proj = torch.nn.Linear(H, H), torch.nn.Linear(H, 2 * H)
                with torch.no_grad():  # qkv rows are [Q; K; V]
                    self.q_proj.weight.copy_(self.qkv.weight[:H]), self.q_proj.bias.copy_(self.qkv.bias[:H])
                    self.kv_proj.weight.copy_(self.qkv.weight[H:]), self.kv_proj.bias.copy_(self.qkv.bias[H:])

        def forward(self, x: torch.Tensor, mask: torch.Tensor, B: int, T: int) -> torch.Tensor:
            # x (B*T, H); mask: int32 (B, T) if fused, else the additive bias (B, 1, 1, T)
            H = x.shape[-1]
            h = self.LayerNorm(x) if self.pre_layer_norm else x
            if attention_op is not None:
                y = attention_op.apply(h.view(B, T, H), self.qkv.weight.t(), self.qkv.bias, mask, self.num_heads)
            else:
                hd = H // self.num_heads
                q, k, v = self.qkv(h).view(B, T, 3, self.num_heads, hd).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hd)
                scores = torch.matmul(q, k.transpose(-1, -2)) * hd ** -0.5 + mask  # (B, nh, T, T)
                bias = self.source.position_bias(T)
                if bias is not None:
                    scores = scores + bias
                y = torch.matmul(scores.softmax(-1), v).transpose(1, 2)
            y = self.dense(y.reshape(B * T, H))
            return x + y if self.pre_layer_norm else self.LayerNorm(x + y)

        def cls_row(self, x: torch.Tensor, mask: torch.Tensor, B: int, T: int) -> torch.Tensor:
            # x (B*T, H) -> (B, H): the [CLS] row of this layer's output, attending over every row
            H = x.shape[-1]
            nh, hd = self.num_heads, H // self.num_heads
            cls = x.view(B, T, H)[:, 0]
            h = self.LayerNorm(x) if self.pre_layer_norm else x
            q = self.q_proj(h.view(B, T, H)[:, 0]).view(B, nh, 1, hd)
            k, v = self.kv_proj(h).view(B, T, 2, nh, hd).permute(2, 0, 3, 1, 4)
            if mask.dtype == torch.int32:  # the fused path's raw mask -> the additive bias
                mask = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
            scores = torch.matmul(q, k.transpose(-1, -2)) * hd ** -0.5 + mask  # (B, nh, 1, T)
            bias = self.source.position_bias(T, slice(0, 1))
            if bias is not None:
                scores = scores + bias
            y = self.dense(torch.matmul(scores.softmax(-1), v).reshape(B, H))
            return cls + y if self.pre_layer_norm else self.LayerNorm(cls + y)

    class ExplicitEncoder(torch.nn.Module):
        def __init__(self, enc: Any) -> None:
            super().__init__()
            self.config = enc.config
            self.embeddings, self.embeddings_project = enc.embeddings, enc.embeddings_project
            last = len(enc.layers) - 1
            self.attention = torch.nn.ModuleList(ExplicitAttention(layer.attention, cls=cls_only and i == last)
                                                 for i, layer in enumerate(enc.layers))
            self.ffn = torch.nn.ModuleList(layer.ffn for layer in enc.layers)
            self.final_LayerNorm = enc.final_LayerNorm

        def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> torch.Tensor:
            B, T = input_ids.shape
            emb = self.embeddings  # Embeddings.forward, with its LayerNorm over rows (see the docstring)
            x = (emb.word_embeddings(input_ids) + emb.position_embeddings(torch.arange(T, device=input_ids.device))
                 + emb.token_type_embeddings(token_type_ids))
            x = emb.LayerNorm(x.reshape(B * T, x.shape[-1]))
            if self.embeddings_project is not None:
                x = self.embeddings_project(x)
            if attention_op is not None:
                mask = attention_mask.to(torch.int32)
            else:
                mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0  # (B, 1, 1, T)
            last = len(self.attention) - 1 if cls_only else len(self.attention)
            for attn, ffn in zip(self.attention[:last], self.ffn[:last]):
                x = ffn(attn(x, mask, B, T))
            if cls_only:
                x = self.ffn[last](self.attention[last].cls_row(x, mask, B, T))
            if self.final_LayerNorm is not None:
                x = self.final_LayerNorm(x)
            return x.view(B, 1 if cls_only else T, -1)

    twin = copy.deepcopy(model).eval()
    twin.electra = ExplicitEncoder(twin.electra)
    return twin
