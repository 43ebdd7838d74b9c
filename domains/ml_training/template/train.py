"""
Train a small byte-level GPT for a fixed budget and report its validation bits per byte.

This is the only file a hypothesis may change. Run it from a folder that also holds harness.py:

    LEDGERLAB_DATA=corpus.txt.gz python train.py

The harness owns the data, the seed and the budget, and hands the model to a separate evaluator (val_bpb on
bytes this run never sees); everything here (the model, the optimizer, the schedule, the tunables below) is
fair game, as long as the model stays exportable with torch.export.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

# ------------------------------------------------------------------------------------------- tunables

DEPTH = 4  # transformer blocks
WIDTH = 128  # model dimension
HEADS = 4  # attention heads (WIDTH must be divisible by HEADS)
MLP_RATIO = 4  # hidden width of the MLP, in multiples of WIDTH
SEQ_LEN = 128  # context length in bytes
BATCH_SIZE = 16  # sequences per step
LR = 1e-3  # peak learning rate of the transformer blocks
EMBED_LR = 1e-3  # peak learning rate of the embeddings (and the head when untied)
WARMUP_FRAC = 0.05  # fraction of the budget spent warming the learning rate up from zero
WARMDOWN_FRAC = 0.3  # fraction of the budget at the end spent decaying it linearly to FINAL_LR_FRAC
FINAL_LR_FRAC = 0.0  # learning rate at the end, as a fraction of the peak
WEIGHT_DECAY = 0.1  # AdamW decoupled weight decay on matrices (not on norms, biases, embeddings)
BETA1 = 0.9
BETA2 = 0.95
GRAD_CLIP = 1.0  # clip the global gradient norm; 0 turns clipping off
INIT_SCALE = 0.02  # standard deviation of the initial weights
ACTIVATION = "gelu"  # gelu, relu, relu2 (squared ReLU) or silu
NORM = "layernorm"  # layernorm or rmsnorm
TIE_WEIGHTS = True  # share the token embedding with the output head
DROPOUT = 0.0


# ------------------------------------------------------------------------------------------- model


def make_norm(dim: int) -> nn.Module:
    return nn.RMSNorm(dim) if NORM == "rmsnorm" else nn.LayerNorm(dim)


def activate(x: torch.Tensor) -> torch.Tensor:
    if ACTIVATION == "relu":
        return F.relu(x)
    if ACTIVATION == "relu2":
        return F.relu(x).square()
    if ACTIVATION == "silu":
        return F.silu(x)
    return F.gelu(x)


class CausalSelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.proj = nn.Linear(WIDTH, WIDTH, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=DROPOUT if self.training else 0.0)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(WIDTH, MLP_RATIO * WIDTH, bias=False)
        self.down = nn.Linear(MLP_RATIO * WIDTH, WIDTH, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(activate(self.up(x)))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1, self.attn = make_norm(WIDTH), CausalSelfAttention()
        self.norm2, self.mlp = make_norm(WIDTH), MLP()
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class GPT(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, WIDTH)
        self.pos_emb = nn.Embedding(SEQ_LEN, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.norm = make_norm(WIDTH)
        self.head = nn.Linear(WIDTH, vocab_size, bias=False)
        if TIE_WEIGHTS:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init)
        # GPT-2: scale the residual projections down with depth so the residual stream starts small.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("down.weight"):
                nn.init.normal_(p, std=INIT_SCALE / math.sqrt(2 * DEPTH))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=INIT_SCALE)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for byte ids idx (B, T), T <= SEQ_LEN."""
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# ------------------------------------------------------------------------------------------- optimizer


def make_optimizer(model: GPT) -> torch.optim.Optimizer:
    """AdamW with two groups: decayed matrices at LR, embeddings/norms undecayed at EMBED_LR."""
    matrices, others = [], []
    for name, p in model.named_parameters():
        is_embedding = "emb" in name or name.startswith("head")
        (matrices if p.dim() >= 2 and not is_embedding else others).append(p)
    groups = [
        {"params": matrices, "lr": LR, "weight_decay": WEIGHT_DECAY},
        {"params": others, "lr": EMBED_LR, "weight_decay": 0.0},
    ]
    for group in groups:
        group["peak_lr"] = group["lr"]
    return torch.optim.AdamW(groups, betas=(BETA1, BETA2))


def lr_multiplier(progress: float) -> float:
    """Linear warmup, flat, then linear warmdown to FINAL_LR_FRAC (progress is the budget fraction used)."""
    if progress < WARMUP_FRAC:
        return progress / WARMUP_FRAC
    if progress > 1.0 - WARMDOWN_FRAC:
        remaining = (1.0 - progress) / WARMDOWN_FRAC
        return FINAL_LR_FRAC + (1.0 - FINAL_LR_FRAC) * remaining
    return 1.0


# ------------------------------------------------------------------------------------------- training

session = harness.start()
model = GPT(session.vocab_size).to(session.device)
optimizer = make_optimizer(model)
model.train()

while not session.done():
    multiplier = lr_multiplier(session.progress())
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * multiplier
    x, y = session.get_batch(BATCH_SIZE, SEQ_LEN)
    with session.autocast():
        logits = model(x)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if GRAD_CLIP > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    session.step(loss)

session.finish(model, SEQ_LEN)
