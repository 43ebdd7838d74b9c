"""The tunable constants of train.py, declared as Knobs (each is one line `NAME = literal` in the file)."""

from __future__ import annotations

from ledgerlab.core.protocols import Knob

FILE = "train.py"


def _int(name: str, low: int, high: int, help: str, log: bool = False) -> Knob:
    return Knob(name=name, file=FILE, kind="int", low=low, high=high, log=log, help=help)


def _float(name: str, low: float, high: float, help: str, log: bool = False) -> Knob:
    return Knob(name=name, file=FILE, kind="float", low=low, high=high, log=log, help=help)


# In the order the knob proposer tries them (core/proposers/knob.py), likeliest gain first: at a short token
# budget the learning rates and their schedule move val_bpb most and cost no run time; then the batch and the
# optimizer's details; then the architecture, DEPTH and WIDTH last among the sizes because they make every
# later run slower; dropout last (it rarely helps a model that sees each byte about once).
KNOBS: tuple[Knob, ...] = (
    _float("EMBED_LR", 1e-4, 1e-1, "peak learning rate of the embeddings and an untied head", log=True),
    _float("LR", 1e-4, 3e-2, "peak learning rate of the transformer blocks", log=True),
    _float("WARMDOWN_FRAC", 0.0, 0.8, "fraction of the budget at the end spent decaying the learning rate"),
    _float("WARMUP_FRAC", 0.0, 0.3, "fraction of the budget spent warming the learning rate up"),
    _int("BATCH_SIZE", 4, 256, "sequences per optimizer step", log=True),
    _float("FINAL_LR_FRAC", 0.0, 0.5, "final learning rate as a fraction of the peak"),
    _float("BETA2", 0.9, 0.999, "AdamW second-moment decay"),
    _float("BETA1", 0.8, 0.95, "AdamW first-moment decay"),
    _float("WEIGHT_DECAY", 0.0, 0.3, "AdamW weight decay on matrices"),
    _float("GRAD_CLIP", 0.0, 5.0, "global gradient-norm clip (0: off)"),
    _float("INIT_SCALE", 0.005, 0.1, "standard deviation of the initial weights", log=True),
    Knob(name="ACTIVATION", file=FILE, kind="choice", choices=("gelu", "relu", "relu2", "silu"),
         help="MLP nonlinearity (relu2: squared ReLU)"),
    Knob(name="NORM", file=FILE, kind="choice", choices=("layernorm", "rmsnorm"), help="normalisation layer"),
    Knob(name="TIE_WEIGHTS", file=FILE, kind="bool", choices=(False, True),
         help="share the token embedding with the output head"),
    _int("SEQ_LEN", 32, 1024, "context length in bytes (also the evaluation window)", log=True),
    _int("MLP_RATIO", 1, 8, "MLP hidden width in multiples of WIDTH"),
    Knob(name="HEADS", file=FILE, kind="choice", choices=(1, 2, 4, 8), help="attention heads"),
    _int("DEPTH", 1, 16, "transformer blocks", log=True),
    Knob(name="WIDTH", file=FILE, kind="choice", choices=(64, 96, 128, 192, 256, 384, 512, 768),
         help="model dimension (every choice is divisible by every HEADS choice)"),
    _float("DROPOUT", 0.0, 0.3, "dropout on the residual branches and attention"),
)
