"""What only a CUDA GPU can check: the training step in bf16 with SDPA and torch.compile, GPU
sampling, and the attention paths. Skipped without one (CI); `bench/gpu_check.py` runs them."""

import dataclasses

import pytest
import torch

from electra_pipeline.modeling import objectives, presets
from electra_pipeline.training import optim
from electra_pipeline.training.pretrainer import ElectraPretrainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _batch(vocab: int, B: int = 8, T: int = 128) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    return {"input_ids": ids.cuda(), "token_type_ids": torch.zeros_like(ids).cuda(),
            "attention_mask": torch.ones_like(ids).cuda()}


@pytest.mark.parametrize("compile_", [False, True])
def test_bf16_training_step_lowers_the_loss_on_cuda(compile_):
    cfg = presets.tiny()
    t = dataclasses.replace(cfg.train, lr=1e-3, compile=compile_)
    torch.manual_seed(0)
    model = ElectraPretrainer(cfg.model, t).cuda()
    runner = torch.compile(model) if compile_ else model
    opt = optim.build_optimizer(model, t, torch.device("cuda"))
    special = torch.tensor([0, 1, 2, 3, 4], device="cuda")
    batch = _batch(cfg.model.vocab_size)
    losses = []
    for _ in range(30):
        m = objectives.mask_tokens(batch["input_ids"], batch["attention_mask"], special, mask_id=4,
                                   vocab_size=cfg.model.vocab_size, mask_prob=0.15, max_predictions=t.max_predictions)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = runner(batch, m, pad_free=True)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.metrics["loss/gen"]))
    assert losses[-1] < losses[0] - 0.5  # memorising one batch


def test_gumbel_sampling_on_cuda_matches_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]], device="cuda").repeat(20000, 1)
    ids = objectives.sample_tokens(logits, rng=torch.Generator(device="cuda").manual_seed(1))
    freq = torch.bincount(ids, minlength=4).float() / len(ids)
    assert torch.allclose(freq, logits[0].softmax(-1), atol=0.02)


@pytest.mark.parametrize("pre_layer_norm", [False, True])
def test_flash_and_masked_attention_agree(pre_layer_norm):
    from electra_pipeline.modeling.model import Discriminator, init_weights

    cfg = dataclasses.replace(presets.tiny().model, pre_layer_norm=pre_layer_norm)
    torch.manual_seed(0)
    d = Discriminator(cfg)
    init_weights(d, 0.02)
    d = d.cuda().eval()
    b = _batch(cfg.vocab_size)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        unmasked = d(b["input_ids"], b["token_type_ids"], None)
        masked = d(b["input_ids"], b["token_type_ids"], b["attention_mask"])
    assert torch.allclose(unmasked.float(), masked.float(), atol=0.05)
