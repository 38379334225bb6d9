import math

import pytest
import torch

from model import GPT, IGNORE, GPTConfig, new_kv_cache

CONFIG = GPTConfig(block_size=32, vocab_size=320, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return GPT(CONFIG).eval()


def test_loss_at_init_is_close_to_a_uniform_guess(model):
    idx, targets = torch.randint(CONFIG.vocab_size, (2, 4, 32))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(CONFIG.vocab_size)) < 0.1


def test_ignored_targets_do_not_count(model):
    idx = torch.randint(CONFIG.vocab_size, (2, 16))
    targets = torch.randint(CONFIG.vocab_size, (2, 16))
    masked = targets.clone()
    masked[:, :8] = IGNORE
    _, loss_masked = model(idx, masked)
    _, loss_all = model(idx, targets)
    assert not torch.isclose(loss_masked, loss_all)
    none_count = torch.full_like(targets, IGNORE)
    _, loss_none = model(idx, none_count)
    assert loss_none.item() == 0.0 and not torch.isnan(loss_none)


def test_tied_embeddings_and_counts(model):
    assert model.lm_head.weight is model.transformer.wte.weight
    c = CONFIG
    per_block = 4 * c.n_embd * c.n_embd + 8 * c.n_embd * c.n_embd + 2 * c.n_embd  # attention, MLP, two LayerNorm gains
    assert model.num_params() == c.vocab_size * c.n_embd + c.n_layer * per_block + c.n_embd  # + the final LayerNorm
    attention = 12 * c.n_layer * c.n_embd * c.block_size
    assert model.training_flops(1) == 6 * model.num_params() + attention  # the usual 6N + 12 L d T per token
    # half the targets ignored: the output layer works at half the positions
    assert model.training_flops(2, 1) == 2 * (6 * model.num_params() + attention) - 6 * c.vocab_size * c.n_embd
    # frozen weights (LoRA): no weight gradients, 4 per weight instead of 6; attention unchanged
    assert model.training_flops(1, weights_train=False) == 4 * model.num_params() + attention


def test_kv_cache_gives_the_same_logits_as_a_full_forward(model):
    idx = torch.randint(CONFIG.vocab_size, (2, 20))
    cache = new_kv_cache(CONFIG, 2, "cpu")
    with torch.no_grad():
        model(idx[:, :7], kv_cache=cache)  # a prompt
        model(idx[:, 7:12], kv_cache=cache)  # a chunk after it: attends to the cache, causally within
        for t in range(12, 20):  # then one token at a time
            cached, _ = model(idx[:, t:t + 1], kv_cache=cache)
            full, _ = model(idx[:, :t + 1])
            torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    assert cache["pos"] == 20


def test_context_overflow_is_refused(model):
    with pytest.raises(ValueError):
        model(torch.zeros(1, CONFIG.block_size + 1, dtype=torch.long))


def test_plain_attention_matches_the_fused_kernel(model):
    """Training on a CPU takes plain_attention, generation and GPUs the fused kernel: the same
    function, values and gradients."""
    attention = model.transformer.h[0].attn
    q, k, v = (torch.randn(2, 2, 20, 16, requires_grad=True) for _ in range(3))
    plain = attention.plain_attention(q, k, v)
    plain_grads = torch.autograd.grad(plain.square().sum(), (q, k, v))
    fused = attention.fused_attention(q, k, v, None, 0)
    fused_grads = torch.autograd.grad(fused.square().sum(), (q, k, v))
    torch.testing.assert_close(plain, fused, atol=1e-5, rtol=1e-5)
    for a, b in zip(plain_grads, fused_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # and the future is really hidden: changing the last key and value changes no earlier output
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, :, -1], v2[:, :, -1] = 5.0, 5.0
    changed = attention.plain_attention(q.detach(), k2, v2)
    torch.testing.assert_close(changed[:, :, :-1], plain.detach()[:, :, :-1])
    assert not torch.allclose(changed[:, :, -1], plain.detach()[:, :, -1])


def test_the_output_layer_in_slices_gives_the_loss_of_the_whole():
    """With a large vocabulary the loss is computed over slices of positions (512 here)."""
    torch.manual_seed(0)
    config = GPTConfig(block_size=64, vocab_size=8192, n_layer=1, n_head=2, n_embd=32)
    model = GPT(config)
    idx, targets = torch.randint(config.vocab_size, (2, 20, 64))
    targets[:, :5] = IGNORE
    _, loss = model(idx, targets)
    loss.backward()
    sliced_grad = model.lm_head.weight.grad.clone()
    model.zero_grad()
    x = model.transformer.ln_f(model.transformer.h[0](model.transformer.wte(idx) + model.transformer.wpe(torch.arange(64))))
    counts = targets != IGNORE
    whole = torch.nn.functional.cross_entropy(model.lm_head(x[counts]), targets[counts])
    whole.backward()
    torch.testing.assert_close(loss, whole)
    torch.testing.assert_close(sliced_grad, model.lm_head.weight.grad)
    assert counts.sum() > 2 * 512  # more than two slices


MODERN = GPTConfig(block_size=32, vocab_size=320, n_layer=2, n_head=2, n_embd=32, rope=True, qk_norm=True,
                   relu2=True, untied=True, logit_cap=0.5)  # a cap small enough to bend these logits


def test_the_modern_changes_against_a_plain_recomputation():
    """rope, qk_norm, relu2, untied and logit_cap: the model's logits equal the same network
    written out by hand, step by step from the formulas."""
    torch.manual_seed(0)
    model = GPT(MODERN).eval()
    idx = torch.randint(MODERN.vocab_size, (2, 12))
    F = torch.nn.functional
    half = 8  # head size 16
    angles = torch.arange(12)[:, None] * 10000.0 ** (-torch.arange(half) / half)

    def rotate(t):  # each channel pair (i, i + half) turned by its position's angle
        a, b = t[..., :half], t[..., half:]
        return torch.cat((a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()), -1)

    x = model.transformer.wte(idx)  # no position table: positions enter through the rotation
    for block in model.transformer.h:
        h = F.layer_norm(x, (32,), block.ln_1.weight)
        q, k, v = (t.view(2, 12, 2, 16).transpose(1, 2) for t in (h @ block.attn.c_attn.weight.T).split(32, -1))
        q, k = rotate(q / q.square().mean(-1, keepdim=True).add(1e-6).sqrt()), rotate(k / k.square().mean(-1, keepdim=True).add(1e-6).sqrt())
        scores = (q @ k.transpose(-2, -1)) / 4 + torch.full((12, 12), float("-inf")).triu(1)
        x = x + (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 12, 32) @ block.attn.c_proj.weight.T
        h = F.layer_norm(x, (32,), block.ln_2.weight)
        x = x + torch.relu(h @ block.mlp.c_fc.weight.T) ** 2 @ block.mlp.c_proj.weight.T
    logits = F.layer_norm(x, (32,), model.transformer.ln_f.weight) @ model.lm_head.weight.T
    expected = 0.5 * torch.tanh(logits / 0.5)
    with torch.no_grad():
        got, _ = model(idx)
        _, loss = model(idx[:, :-1], idx[:, 1:])
    torch.testing.assert_close(got, expected[:, -1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(loss, F.cross_entropy(expected[:, :-1].flatten(0, 1), idx[:, 1:].flatten()), atol=1e-5, rtol=1e-4)
    assert model.lm_head.weight is not model.transformer.wte.weight and "wpe" not in model.transformer
    assert (logits - expected).abs().max() > 1e-3  # the cap matters here: leaving it out would fail above


def test_modern_kv_cache_and_zero_init():
    """The rotation follows the cache's position: cached generation equals a full forward. With
    zero_init every block starts as the identity (its projections into the residual are zero)."""
    torch.manual_seed(0)
    model = GPT(MODERN).eval()
    idx = torch.randint(MODERN.vocab_size, (1, 20))
    cache = new_kv_cache(MODERN, 1, "cpu")
    with torch.no_grad():
        model(idx[:, :9], kv_cache=cache)
        for t in range(9, 20):
            cached, _ = model(idx[:, t:t + 1], kv_cache=cache)
            torch.testing.assert_close(cached, model(idx[:, :t + 1])[0], atol=1e-5, rtol=1e-5)
    zero = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=2, n_head=2, n_embd=16, zero_init=True))
    x = torch.randn(1, 8, 16)
    torch.testing.assert_close(zero.transformer.h[1](zero.transformer.h[0](x)), x)
    # untied: the token table is a lookup, left out of the matmul count
    untied = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16, untied=True, rope=True))
    assert untied.num_params() == sum(p.numel() for p in untied.parameters()) - 64 * 16


@pytest.mark.parametrize("n_embd, int8_layers", [(32, 4 * MODERN.n_layer + 1), (48, 4 * MODERN.n_layer + 1),
                                                 (40, MODERN.n_layer)])
def test_int8_weights_of_the_modern_model_give_nearly_its_logits(n_embd, int8_layers):
    """sample.py's int8 path on pretrain.py's architecture: every Linear, the untied output layer
    too, becomes int8, and the logits stay within a few thousandths of the float ones. The int8
    kernel reads its input in blocks of 16 (other widths gave NaN or crashed): 40 wide, only each
    MLP's second layer (160 wide in) becomes int8 and the others stay as they are."""
    import copy
    import dataclasses
    from generation import Int8Linear, quantize_int8
    torch.manual_seed(0)
    config = dataclasses.replace(MODERN, n_embd=n_embd)
    model = GPT(config).eval()
    idx = torch.randint(config.vocab_size, (1, 20))
    with torch.no_grad():
        expected = model(idx)[0]
        quantized = quantize_int8(copy.deepcopy(model)).to(torch.bfloat16)
        got = quantized(idx)[0].float()
    assert sum(isinstance(m, Int8Linear) for m in quantized.modules()) == int8_layers
    assert sum(isinstance(m, torch.nn.Linear) for m in quantized.modules()) == 4 * config.n_layer + 1 - int8_layers
    assert (got - expected).abs().max() < 0.02 * expected.abs().max() and (got.argmax(-1) == expected.argmax(-1)).all()
