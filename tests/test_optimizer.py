"""optimizer.py: AdamW's groups and Muon, against torch's own and a plain check."""


def test_muon_by_hand_matches_torchs_and_orthogonalises():
    """Our Muon takes the same steps as torch.optim.Muon (which orthogonalises in bf16, hence the
    tolerance), whether it orthogonalises in fp32 or in bf16 (the training's precision on a CPU
    with bf16: the two differ, so the precision asked for is the one used), and its Newton-Schulz
    steps bring every singular value near 1, even for a gradient dominated by a few directions, in
    either precision."""
    import torch
    from optimizer import Muon, orthogonalise
    after = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        ours, theirs = torch.nn.Parameter(torch.randn(64, 32)), torch.nn.Parameter(torch.randn(64, 32))
        theirs.data.copy_(ours.data)
        start = ours.detach().clone()
        a = Muon([ours], lr=1e-2, weight_decay=0.1, dtype=dtype)
        b = torch.optim.Muon([theirs], lr=1e-2, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
        for _ in range(3):
            ours.grad = torch.randn(64, 32)
            theirs.grad = ours.grad.clone()
            a.step()
            b.step()
        moved = (ours - start).abs().max().item()
        assert ours.dtype == torch.float32 and moved > 0.01 and (ours - theirs).abs().max().item() < 0.05 * moved
        after[dtype] = ours.detach()
    assert 1e-5 < (after[torch.float32] - after[torch.bfloat16]).abs().max().item() < 0.05 * moved
    skewed = torch.randn(96, 32) * 1e-3
    skewed[:, :3] *= 100  # three directions ten thousand times stronger (in squared size) than the rest
    for g in (torch.randn(32, 128), skewed):
        for dtype in (torch.float32, torch.bfloat16):
            singular = torch.linalg.svdvals(orthogonalise(g.to(dtype)).float())
            assert 0.6 < singular.min() and singular.max() < 1.3, (g.shape, dtype)
    # four directions a million times the rest, the MLP's shape: steps on its Gram matrix in bf16 gave 7 (2026-12-04)
    few = torch.randn(256, 4) @ torch.randn(4, 1024) * 10 + torch.randn(256, 1024) * 0.01
    for dtype in (torch.float32, torch.bfloat16):
        assert torch.linalg.svdvals(orthogonalise(few.to(dtype)).float()).max() < 1.3, dtype


def test_orthogonalising_a_long_matrix_through_its_gram_matrix_gives_the_plain_steps_values():
    """A matrix at least twice as long as wide is orthogonalised on its Gram matrix: the values
    are those of the five plain Newton-Schulz steps, computed here on the matrix itself."""
    import torch
    from optimizer import orthogonalise
    torch.manual_seed(0)
    for g in (torch.randn(3, 32, 96, dtype=torch.float64), torch.randn(128, 32, dtype=torch.float64)):
        x = g if g.shape[-2] <= g.shape[-1] else g.mT
        x = x / x.norm(dim=(-2, -1), keepdim=True)
        for _ in range(5):
            gram = x @ x.mT
            x = 3.4445 * x - (4.7750 * gram - 2.0315 * gram @ gram) @ x
        plain = x if g.shape[-2] <= g.shape[-1] else x.mT
        assert plain.shape == g.shape and (orthogonalise(g) - plain).abs().max().item() < 1e-12
        assert (orthogonalise(g.float()) - plain).abs().max().item() < 1e-4  # and in fp32, what training uses


def test_muon_takes_the_blocks_matrices_at_its_learning_rate_scale():
    """Muon gets each block's four matrices (c_attn in three slices: query, key, value), AdamW
    everything else, every parameter exactly once; a step sets Muon's lr to muon_lr_scale times
    the schedule's."""
    import torch
    from model import GPT, GPTConfig
    from optimizer import make_optimizer
    from trainer import TrainSettings, train_step
    model = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=2, n_head=2, n_embd=16, untied=True))
    optimizer = make_optimizer(model, 1e-3, 0.1, 0.99, muon=True, muon_lr_scale=3.0, dtype="bfloat16")
    assert optimizer.muon.dtype == torch.bfloat16  # orthogonalised in the training's precision
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)]: g["slices"] for g in optimizer.muon.param_groups for p in g["params"]}
    adamw = [names[id(p)] for g in optimizer.adamw.param_groups for p in g["params"]]
    expected = {f"transformer.h.{i}.{m}.weight": 3 if m == "attn.c_attn" else 1
                for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert muon == expected and sorted(adamw + list(muon)) == sorted(names.values())
    settings = TrainSettings(max_iters=10, learning_rate=1e-3, min_lr=1e-4, warmup_iters=0, gradient_accumulation_steps=1,
                             grad_clip=1.0, eval_interval=10, eval_iters=1, seed=0, device="cpu", dtype="float32")
    batch = torch.randint(64, (2, 8)), torch.randint(64, (2, 8))
    train_step(model, optimizer, lambda *_: batch, settings, 3, 0, 1, torch.autocast("cpu", enabled=False))
    assert optimizer.muon.param_groups[0]["lr"] == 3 * optimizer.adamw.param_groups[0]["lr"] > 0
