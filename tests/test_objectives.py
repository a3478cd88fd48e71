"""Masking statistics and exclusions, sampling, replaced-token labels, losses."""

import math

import pytest
import torch

from electra_pipeline.modeling import objectives as o

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = torch.tensor([PAD, UNK, CLS, SEP, MASK])
V = 1000


def batch(B=64, T=128, pad_from=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    ids[:, 0] = CLS
    ids[:, T // 2] = SEP
    ids[:, pad_from - 1] = SEP
    ids[:, pad_from:] = PAD
    return ids, (ids != PAD).long()


def mask(ids, am, **kw):
    args = dict(mask_id=MASK, vocab_size=V, mask_prob=0.15, max_predictions=20, rng=torch.Generator().manual_seed(1))
    args.update(kw)
    return o.mask_tokens(ids, am, SPECIAL, **args)


def test_masking_rate_and_cap():
    ids, am = batch()
    m = mask(ids, am)
    n_maskable = 100 - 3  # CLS + two SEP
    assert torch.all(m.weights.sum(-1) == round(0.15 * n_maskable))
    ids, am = batch(pad_from=128)
    m = mask(ids, am)  # 125 maskable tokens -> 19 wanted, cap 20
    assert torch.all(m.weights.sum(-1) == 19)
    m = mask(ids, am, max_predictions=10)
    assert torch.all(m.weights.sum(-1) == 10)


def test_special_tokens_and_padding_never_chosen():
    ids, am = batch()
    m = mask(ids, am)
    chosen = torch.gather(ids, 1, m.positions)[m.weights.bool()]
    assert not torch.isin(chosen, SPECIAL).any()
    real = m.positions[m.weights.bool()]
    assert (real < 100).all()
    # positions within a sequence are distinct
    for b in range(ids.shape[0]):
        p = m.positions[b][m.weights[b].bool()]
        assert len(p.unique()) == len(p)


def test_85_percent_mask_15_percent_kept_no_random():
    ids, am = batch(B=512)
    m = mask(ids, am)
    w = m.weights.bool()
    shown = torch.gather(m.input_ids, 1, m.positions)[w]
    orig = m.original[w]
    frac_mask = (shown == MASK).float().mean().item()
    assert abs(frac_mask - 0.85) < 0.02
    assert torch.all((shown == MASK) | (shown == orig))  # no random replacements
    # unchosen positions are untouched
    untouched = m.input_ids.clone()
    untouched.scatter_(1, m.positions, m.original)
    assert torch.equal(untouched, ids)


def test_random_token_option():
    ids, am = batch(B=512)
    m = mask(ids, am, mask_token_prob=0.8, random_token_prob=0.1)
    w = m.weights.bool()
    shown = torch.gather(m.input_ids, 1, m.positions)[w]
    changed = (shown != MASK) & (shown != m.original[w])
    assert 0.07 < changed.float().mean().item() < 0.11


def test_uniform_choice_over_positions():
    ids, am = batch(B=4000, T=16, pad_from=16)
    m = mask(ids, am, max_predictions=3)
    counts = torch.bincount(m.positions[m.weights.bool()], minlength=16).float()
    maskable = counts[[i for i in range(1, 15) if i != 8]]  # CLS at 0, SEP at 8 and 15
    assert counts[[0, 8, 15]].sum() == 0
    assert maskable.std() / maskable.mean() < 0.1


@pytest.mark.parametrize("sampler", [o._inverse_cdf_sample, o._gumbel_max_sample])
def test_samplers_match_softmax(sampler):
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -float("inf")]]).expand(20000, -1).contiguous()
    s = sampler(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(s, minlength=5).float() / len(s)
    assert s.shape == (20000,) and freq[4] == 0  # a zero-probability id is never drawn
    assert torch.allclose(freq, logits[0].softmax(-1), atol=0.015)


def test_sample_tokens_keeps_leading_dims_and_rng_reproduces():
    logits = torch.randn(3, 7, 50)
    a = o.sample_tokens(logits, 0.7, torch.Generator().manual_seed(3))
    b = o.sample_tokens(logits, 0.7, torch.Generator().manual_seed(3))
    assert a.shape == (3, 7) and a.dtype == torch.long and torch.equal(a, b)


def test_sample_tokens_has_no_gradient_and_is_fp32_safe():
    logits = torch.randn(8, 50, requires_grad=True)
    s = o.sample_tokens(logits.bfloat16())
    assert s.dtype == torch.long and not s.requires_grad


def test_labels_sample_equal_to_original_counts_as_original():
    ids, am = batch(B=2, T=16, pad_from=16)
    m = mask(ids, am, max_predictions=4)
    sampled = m.original.clone()
    sampled[0, 0] = (m.original[0, 0] + 1) % V  # one real replacement
    fake, labels = o.replace_tokens(m, sampled, ids)
    assert labels.sum() == 1 and labels[0, m.positions[0, 0]] == 1
    assert torch.equal(fake[1], ids[1])  # correct samples restore the original


def test_losses():
    logits = torch.zeros(2, 3, 10)
    targets = torch.zeros(2, 3, dtype=torch.long)
    w = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert math.isclose(o.mlm_loss(logits, targets, w).item(), math.log(10), rel_tol=1e-6)
    rl = torch.tensor([[0.0, 0.0, 100.0]])
    labels = torch.tensor([[0.0, 1.0, 1.0]])
    am = torch.tensor([[1, 1, 0]])
    assert math.isclose(o.rtd_loss(rl, labels, am).item(), math.log(2), rel_tol=1e-6)  # padding ignored


def test_electra_step_weights_losses_and_blocks_gradient_through_sampling():
    import dataclasses

    from electra_pipeline.modeling import presets
    from electra_pipeline.training.pretrainer import ElectraPretrainer

    cfg = presets.tiny()
    model = ElectraPretrainer(dataclasses.replace(cfg.model, vocab_size=V), cfg.train)
    ids, am = batch(B=4, T=64, pad_from=60)
    tt = torch.zeros_like(ids)
    m = model.mask({"input_ids": ids, "attention_mask": am}, SPECIAL, MASK, torch.Generator().manual_seed(0))
    b = {"input_ids": ids, "token_type_ids": tt, "attention_mask": am}
    out = model(b, m, torch.Generator().manual_seed(0))
    assert torch.allclose(out.loss, out.metrics["loss/gen"] + 50.0 * out.metrics["loss/disc"])

    # With the MLM term off, no gradient may reach generator-only weights through the samples.
    rtd_only = ElectraPretrainer(dataclasses.replace(cfg.model, vocab_size=V), dataclasses.replace(cfg.train, gen_weight=0.0))
    rtd_only.load_state_dict(model.state_dict())
    rtd_only(b, m, torch.Generator().manual_seed(0)).loss.backward()
    gen_only = [p for n, p in rtd_only.generator.named_parameters() if not n.startswith("electra.embeddings.")]
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in gen_only)
    shared = rtd_only.discriminator.electra.embeddings.word_embeddings.weight
    assert shared.grad is not None and shared.grad.abs().max() > 0


def test_electra_15_scores_the_discriminator_on_the_masked_positions_only():
    """The paper's "ELECTRA 15%" ablation: same generator, same replacements, but the RTD loss is
    the mean BCE over the masked positions; a change of the discriminator's logit anywhere
    else moves nothing."""
    logits = torch.randn(2, 8)
    labels = torch.zeros(2, 8)
    labels[0, 3] = 1.0
    masked = o.Masked(input_ids=torch.zeros(2, 8, dtype=torch.long), positions=torch.tensor([[3, 5], [1, 0]]),
                      original=torch.zeros(2, 2, dtype=torch.long), weights=torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    at = lambda lg: o.rtd_loss(lg.gather(1, masked.positions), labels.gather(1, masked.positions),  # noqa: E731
                               masked.weights)
    want = sum(float(torch.nn.functional.binary_cross_entropy_with_logits(logits[b, t], labels[b, t]))
               for b, t in ((0, 3), (0, 5), (1, 1))) / 3
    assert float(at(logits)) == pytest.approx(want, rel=1e-6)
    elsewhere = logits.clone()
    elsewhere[0, 0] += 5.0
    elsewhere[1, 0] += 5.0  # a padding slot points at position 0: weight 0
    assert float(at(elsewhere)) == pytest.approx(want, rel=1e-6)

    import dataclasses

    from electra_pipeline.modeling import presets
    from electra_pipeline.training.pretrainer import ElectraPretrainer

    cfg = presets.tiny()
    ids, am = batch(B=4, T=64, pad_from=60)
    b = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": am}
    runs = {}
    for objective in ("electra", "electra_15"):
        torch.manual_seed(0)
        model = ElectraPretrainer(dataclasses.replace(cfg.model, vocab_size=V),
                                  dataclasses.replace(cfg.train, objective=objective)).eval()
        m = model.mask(b, SPECIAL, MASK, torch.Generator().manual_seed(0))
        runs[objective] = model(b, m, torch.Generator().manual_seed(0)).metrics
    assert runs["electra"]["loss/gen"] == runs["electra_15"]["loss/gen"]  # same weights, same samples
    assert runs["electra"]["loss/disc"] != runs["electra_15"]["loss/disc"]


def test_generator_accuracy_counts_only_positions_it_could_not_see():
    """A generator that copies its input scores 100% at the kept 15% of chosen positions: the
    accuracy metric leaves those out, so copying reads as 0%, not ~15%."""
    from electra_pipeline.modeling.objectives import Masked, hidden_accuracy

    original = torch.tensor([[10, 11, 12, 13]])
    shown = torch.tensor([[4, 11, 4, 13]])  # positions 0 and 2 masked, 1 and 3 kept
    masked = Masked(input_ids=shown, positions=torch.arange(4)[None], original=original,
                    weights=torch.ones(1, 4))
    copy = torch.nn.functional.one_hot(shown, 20).float()  # predicts what it sees
    assert float(hidden_accuracy(copy, masked)) == 0.0
    right = torch.nn.functional.one_hot(original, 20).float()
    assert float(hidden_accuracy(right, masked)) == 1.0
    half = right.clone()
    half[0, 2] = copy[0, 2]
    assert float(hidden_accuracy(half, masked)) == 0.5


def _pretrainer(objective="electra", sharing="tied", **train):
    import dataclasses

    from electra_pipeline.modeling import presets
    from electra_pipeline.training.pretrainer import ElectraPretrainer

    cfg = presets.tiny()
    model_cfg = dataclasses.replace(cfg.model, vocab_size=V, embedding_sharing=sharing)
    return ElectraPretrainer(model_cfg, dataclasses.replace(cfg.train, objective=objective, **train))


def _step(model, seed=0):
    ids, am = batch(B=4, T=64, pad_from=60)
    b = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": am}
    m = model.mask(b, SPECIAL, MASK, torch.Generator().manual_seed(seed))
    return b, m, model(b, m, torch.Generator().manual_seed(seed))


def test_copy_gate_of_all_tokens_mlm():
    """p(x_t) = D 1[shown = x_t] + (1 - D) softmax_x_t with D = sigmoid(-replaced_logit): a gate
    sure of "copy" costs nothing where the shown token is the original and everything where it
    was replaced; a gate at 1/2 mixes the two."""
    V_ = 4
    logits = torch.zeros(1, 2, V_)  # softmax 1/4 everywhere
    targets = torch.tensor([[1, 2]])
    shown = torch.tensor([[1, 3]])  # position 1 was replaced
    am = torch.ones(1, 2)
    sure_copy = torch.tensor([[-50.0, -50.0]])
    loss = o.copy_mlm_loss(logits, sure_copy, shown, targets, am)
    # position 0: -log(1) = 0; position 1: copying is wrong, -log((1 - D) / 4) ~ 50 + log 4
    assert float(loss) == pytest.approx((0 + 50 + math.log(4)) / 2, rel=1e-3)
    half = torch.zeros(1, 2)
    want = (-math.log(0.5 + 0.5 / 4) - math.log(0.5 / 4)) / 2
    assert float(o.copy_mlm_loss(logits, half, shown, targets, am)) == pytest.approx(want, rel=1e-6)
    assert float(o.copy_mlm_loss(logits, half, shown, targets, torch.tensor([[1.0, 0.0]]))) == pytest.approx(
        -math.log(0.5 + 0.5 / 4), rel=1e-6)  # padding ignored


def test_candidate_sets_hold_the_original_exactly_once():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 50, generator=g)
    logits[..., 5] = 30.0  # a generator sure of id 5: it still may not be the original twice
    original = torch.randint(0, 50, (3, 7), generator=g)
    original[0, 0] = 5
    cands = o.sample_candidates(logits, original, 4, torch.Generator().manual_seed(1))
    assert cands.shape == (3, 7, 4)
    assert torch.equal(cands[..., 0], original)
    assert ((cands == original[..., None]).sum(-1) == 1).all()
    assert all(len(set(row.tolist())) == 4 for row in cands.reshape(-1, 4))  # distinct candidates
    assert (cands[0, 0, 1:] != 5).all() and (cands[0, 1:, 1] == 5).all()  # the likely rival comes first
    assert float(o.select_loss(torch.tensor([[[9.0, 0.0, 0.0]]]), torch.ones(1, 1))) < 0.01
    assert float(o.select_loss(torch.zeros(2, 3), torch.tensor([1.0, 0.0]))) == pytest.approx(math.log(3))


@pytest.mark.parametrize("objective", ["replace_mlm", "all_tokens_mlm", "mc_bert", "teams"])
def test_each_objective_weights_its_losses_and_blocks_gradient_through_sampling(objective):
    model = _pretrainer(objective)
    b, m, out = _step(model)
    mt = out.metrics
    want = {"replace_mlm": mt["loss/gen"] + mt.get("loss/main", 0),
            "all_tokens_mlm": mt["loss/gen"] + mt.get("loss/main", 0),
            "mc_bert": mt["loss/gen"] + 2.0 * mt.get("loss/main", 0),
            "teams": mt["loss/gen"] + 50.0 * mt.get("loss/disc", 0) + 2.0 * mt.get("loss/select", 0)}[objective]
    assert torch.allclose(out.loss, want)
    rtd_only = _pretrainer(objective, gen_weight=0.0)
    rtd_only.load_state_dict(model.state_dict())
    rtd_only(b, m, torch.Generator().manual_seed(0)).loss.backward()
    gen_only = [p for n, p in rtd_only.generator.named_parameters() if not n.startswith("electra.embeddings.")]
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in gen_only)


def test_replace_mlm_scores_masked_positions_and_all_tokens_mlm_every_token():
    """Replace MLM's loss moves only with the main model's predictions at the masked positions;
    All-Tokens MLM's with every token's: read from which rows of the encoder's output get gradient."""
    for objective, everywhere in (("replace_mlm", False), ("all_tokens_mlm", True)):
        model = _pretrainer(objective, gen_weight=0.0).eval()
        b, m, _ = _step(model)
        electra = model.discriminator.electra
        hidden = {}  # the encoder's output, kept to read its gradient per position

        def keep(mod, args, out, hidden=hidden):
            out.retain_grad()
            hidden["h"] = out

        handle = electra.register_forward_hook(keep)
        model.zero_grad()
        model(b, m, torch.Generator().manual_seed(0)).loss.backward()
        handle.remove()
        touched = hidden["h"].grad.abs().sum(-1) > 0  # (B, T)
        chosen = torch.zeros_like(touched)
        chosen.scatter_(1, m.positions, m.weights.bool())
        if everywhere:
            assert touched[b["attention_mask"].bool()].all()
        else:
            assert torch.equal(touched, chosen)


def test_mc_bert_answers_every_token_and_teams_the_masked_ones():
    mc = _pretrainer("mc_bert")
    _, _, out = _step(mc)
    assert 0 <= float(out.metrics["main/accuracy"]) <= 1 and "main/replaced_accuracy" in out.metrics
    teams = _pretrainer("teams", candidates=3)
    _, _, out = _step(teams)
    assert {"loss/select", "select/accuracy", "loss/disc"} <= set(out.metrics)


def test_gdes_sends_no_rtd_gradient_into_the_shared_table():
    """DeBERTa-v3's GDES: with the MLM term off, the RTD loss trains the delta and leaves the
    generator's table alone; with `tied` the same loss reaches the one shared table."""
    gdes = _pretrainer("electra", "gdes", gen_weight=0.0)
    table = gdes.generator.electra.embeddings.word_embeddings.weight
    delta = gdes.discriminator.electra.embeddings.word_embeddings.delta
    assert float(delta.detach().abs().max()) == 0.0  # zero-initialised: both read the same table at the start
    _, _, out = _step(gdes)
    out.loss.backward()
    assert table.grad is None or float(table.grad.abs().max()) == 0.0
    assert float(delta.grad.abs().max()) > 0
    with_mlm = _pretrainer("electra", "gdes")
    _, _, out = _step(with_mlm)
    out.loss.backward()
    assert float(with_mlm.generator.electra.embeddings.word_embeddings.weight.grad.abs().max()) > 0
    tied = _pretrainer("electra", "tied", gen_weight=0.0)
    _, _, out = _step(tied)
    out.loss.backward()
    assert float(tied.generator.electra.embeddings.word_embeddings.weight.grad.abs().max()) > 0
    none = _pretrainer("electra", "none")
    assert none.generator.electra.embeddings is not none.discriminator.electra.embeddings
