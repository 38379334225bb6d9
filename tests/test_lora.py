"""The hand-written LoRA: starts at the base, leaves it untouched, merges exactly, saves alone."""
import pytest
import torch

from cli import UserError
from lora import add_lora, load_lora_state, lora_state_dict, merge_lora, weights_fingerprint
from model import GPT, GPTConfig

CONFIG = GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32)
TARGETS = ["c_attn", "c_proj", "c_fc"]


def models():
    torch.manual_seed(0)
    base = GPT(CONFIG).eval()
    adapted = GPT(CONFIG)
    adapted.load_state_dict(base.state_dict())
    add_lora(adapted, TARGETS, rank=4, alpha=8, dropout=0.0)
    return base, adapted.eval()


def train_a_little(model, steps=20):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    idx = torch.randint(CONFIG.vocab_size, (4, 16), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(steps):
        _, loss = model(idx, idx)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_adapted_model_starts_exactly_at_the_base():
    base, adapted = models()
    idx = torch.randint(CONFIG.vocab_size, (2, 16))
    assert torch.equal(base(idx, idx)[1], adapted(idx, idx)[1])


def test_only_lora_trains_and_base_weights_stay_bit_identical():
    base, adapted = models()
    before = {k: v.clone() for k, v in adapted.state_dict().items() if ".lora_" not in k}
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    # 3 layers a block: c_attn (32 -> 96), attn.c_proj (32 -> 32), c_fc (32 -> 128), mlp.c_proj (128 -> 32)
    expected = 2 * 4 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == expected
    losses = train_a_little(adapted)
    assert losses[-1] < losses[0]
    for k, v in adapted.state_dict().items():
        if ".lora_" not in k:
            assert torch.equal(v, before[k]), k


def test_merged_equals_unmerged_and_has_no_lora_left():
    _, adapted = models()
    train_a_little(adapted)
    idx = torch.randint(CONFIG.vocab_size, (2, 16))
    with torch.no_grad():
        unmerged = adapted(idx, idx)[1]
        merged_model = merge_lora(adapted)
        merged = merged_model(idx, idx)[1]
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    assert not any(".lora_" in k for k in merged_model.state_dict())
    plain = GPT(CONFIG)
    plain.load_state_dict(merged_model.state_dict())  # loads into a model with no LoRA code


def test_adapter_state_holds_only_lora_and_loads_back():
    base, adapted = models()
    train_a_little(adapted)
    state = lora_state_dict(adapted)
    assert state and all(".lora_" in k for k in state)
    _, fresh = models()
    load_lora_state(fresh, state)
    idx = torch.randint(CONFIG.vocab_size, (2, 16))
    assert torch.equal(fresh(idx, idx)[1], adapted(idx, idx)[1])


def test_fingerprint_tells_bases_apart():
    base, _ = models()
    saved = {k: v.clone() for k, v in base.state_dict().items()}
    assert weights_fingerprint(base.state_dict()) == weights_fingerprint(saved)
    with torch.no_grad():
        base.transformer.h[0].mlp.c_fc.weight[0, 0] += 1e-3
    assert weights_fingerprint(base.state_dict()) != weights_fingerprint(saved)


def test_targets_that_match_nothing_are_refused():
    with pytest.raises(UserError):
        add_lora(GPT(CONFIG), ["q_proj"], 4, 8, 0.0)


def test_a_rank_above_the_layers_narrower_side_is_refused():
    with pytest.raises(UserError, match="--lora_rank=17 is above the adapted layers' narrower side \\(16\\)"):
        add_lora(GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16)), ["c_attn"], 17, 8, 0.0)
    assert add_lora(GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16)), ["c_attn"], 16, 8, 0.0) == [
        "transformer.h.0.attn.c_attn"]


def test_weight_decay_reaches_the_lora_matrices():
    from optimizer import make_optimizer
    model = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16))
    add_lora(model, ["c_attn"], rank=2, alpha=4.0, dropout=0.0)
    decayed, not_decayed = make_optimizer(model, 1e-3, 0.1, 0.99).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)].split(".")[-1] for p in decayed["params"]) == ["lora_A", "lora_B"]
    assert decayed["weight_decay"] == 0.1 and not not_decayed["params"]  # the frozen base trains nothing
