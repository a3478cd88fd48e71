"""torch.compile of the joint pre-trainer: one graph, and the same step as eager."""

import copy
import dataclasses

import torch

from electra_pipeline.data.batches import Batch
from electra_pipeline.modeling import config as c
from electra_pipeline.modeling import objectives, presets
from electra_pipeline.training import optim, train
from electra_pipeline.training.pretrainer import ElectraPretrainer

SPECIAL = torch.tensor([0, 1, 2, 3, 4])
MASK = 4


def tiny() -> c.PretrainConfig:
    cfg = presets.tiny()
    model = dataclasses.replace(cfg.model, vocab_size=512, hidden_size=64, num_heads=2, intermediate_size=128,
                                embedding_size=32, dropout=0.0, attention_dropout=0.0)
    return dataclasses.replace(cfg, model=model, train=dataclasses.replace(cfg.train, seq_len=32, batch_size=4))


def batch(B: int = 4, T: int = 32) -> Batch:
    ids = torch.randint(5, 512, (B, T), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, T // 2], ids[:, -1] = 2, 3, 3
    ids[1, 20:] = 0  # one padded row
    am = (ids != 0).long()
    tt = ((torch.cumsum(ids == 3, 1) - (ids == 3).long()) >= 1).long() * am
    return Batch(ids, tt, am)


def step(model: ElectraPretrainer, runner: torch.nn.Module, mb: Batch) -> dict[str, torch.Tensor]:
    t = model.train_cfg
    optimizer = optim.build_optimizer(model, t, torch.device("cpu"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    rng = torch.Generator().manual_seed(1)
    return train.train_step(runner, model, optimizer, scheduler, [mb],
                            lambda b: model.mask(b.as_dict(), SPECIAL, MASK, torch.Generator().manual_seed(2)),
                            device=torch.device("cpu"), amp=None, grad_clip=1.0, rng=rng)


def test_joint_step_is_one_graph():
    """No graph break: sampling draws from the default generator when compiled (a Generator
    argument would split the step in two)."""
    cfg = tiny()
    model = ElectraPretrainer(cfg.model, cfg.train)
    mb = batch()
    m = model.mask(mb.as_dict(), SPECIAL, MASK, torch.Generator().manual_seed(2))
    explained = torch._dynamo.explain(model)(mb, m, torch.Generator().manual_seed(1))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]


def test_compiled_step_equals_eager(monkeypatch):
    """Same loss and the same weights after a full step (forward, backward, clip, AdamW).
    Sampling is fixed here: compiled code draws its noise from another generator than eager.
    About 30 s on two busy CPU cores, most of it compiling."""
    monkeypatch.setattr(objectives, "sample_tokens",
                        lambda logits, temperature=1.0, rng=None: (logits.detach().float() * 0).long()[..., 0] + 7)
    torch._dynamo.reset()
    cfg = tiny()
    torch.manual_seed(0)
    eager = ElectraPretrainer(cfg.model, cfg.train)
    compiled = copy.deepcopy(eager)
    mb = batch()
    a = step(eager, eager, mb)
    b = step(compiled, torch.compile(compiled), mb)
    for k in ("loss/total", "loss/gen", "loss/disc", "grad_norm"):
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), (k, a[k], b[k])
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), name
