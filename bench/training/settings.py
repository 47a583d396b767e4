"""Training settings (validated, with a help text per field) and what a training run reports back."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from zpeft.training.losses import LOSSES

DATA_PLACEMENTS = ("auto", "device", "host")
SCHEDULES = ("plateau", "onecycle", "constant")


@dataclass(frozen=True)
class TrainSettings:
    """Training budget and optimiser settings, validated on creation; `lr` None until the plan resolves it."""

    epochs: int = field(default=60, metadata={
        "help": "epoch cap: a safety limit; training normally ends by the stopping rule (patience) before it"})
    lr: float | None = field(default=None, metadata={
        "help": "peak learning rate; None: the suite's, else the strategy's default (resolved by the run plan)"})
    batch_size: int = field(default=128, metadata={"help": "training batch size"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW decoupled weight decay"})
    loss: str = field(default="hsc", metadata={"help": "training loss by name: hsc, mse or l1"})
    patience: int = field(default=3, metadata={
        "help": "stopping rule: epochs without a better validation loss (counted after warm-up) before stopping"})
    min_delta: float = field(default=5e-3, metadata={
        "help": "a validation loss counts as better only when it is lower by this share of the best so far"})
    warmup_epochs: int = field(default=1, metadata={
        "help": "plateau schedule: epochs of linear warm-up; they do not count towards patience"})
    lr_patience: int = field(default=2, metadata={
        "help": "plateau schedule: epochs without a better validation loss before the rate is cut"})
    lr_factor: float = field(default=0.3, metadata={"help": "plateau schedule: the factor of each rate cut"})
    augment: bool = field(default=True, metadata={
        "help": "random 90-degree rotations and flips: galaxies have no preferred orientation"})
    schedule: str = field(default="plateau", metadata={
        "help": "learning-rate schedule: plateau (warm-up, then constant, cut when validation stalls), onecycle "
                "(stretched over the epoch cap) or constant"})
    eval_batch_size: int = field(default=1024, metadata={"help": "batch size for validation and prediction"})
    cuda_graph: bool = field(default=False, metadata={
        "help": "CUDA only: capture the whole training step once, replay it per batch"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the model for training steps (measure: it is not always faster)"})
    data_placement: str = field(default="auto", metadata={
        "help": "CUDA only: device (all data on the GPU), host (pinned, prefetched) or auto (by free memory)"})
    oom_retries: int = field(default=0, metadata={
        "help": "CUDA out of memory: halve the batch and start the training again, up to this many times"})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES.names())}")
        if isinstance(self.oom_retries, bool) or not isinstance(self.oom_retries, int) or self.oom_retries < 0:
            raise ValueError(f"oom_retries must be an integer >= 0, got {self.oom_retries!r}")
        for name in ("epochs", "batch_size", "patience", "eval_batch_size", "lr_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an integer >= 0, got {self.warmup_epochs!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"lr_factor must lie in (0, 1), got {self.lr_factor}")
        if not 0 <= self.min_delta < 1:
            raise ValueError(f"min_delta must lie in [0, 1), got {self.min_delta}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.data_placement not in DATA_PLACEMENTS:
            raise ValueError(f"data_placement must be one of {DATA_PLACEMENTS}, got {self.data_placement!r}")

    def with_lr(self, default_lr: float) -> TrainSettings:
        """These settings with `lr` filled in from a default when unset."""
        return self if self.lr is not None else replace(self, lr=default_lr)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (for error messages and documentation)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass
class TrainResult:
    """What a training run cost and how it went; the fields go into run records as they are."""

    epochs_run: int
    best_epoch: int  # 0: no epoch beat the starting weights, which were kept ("no gain")
    best_val_loss: float
    images_seen: int
    train_seconds: float
    images_per_second: float
    peak_memory_mb: float
    memory_kind: str
    device: str
    history: list[dict] = field(default_factory=list)
    step_mode: str = "eager"  # "eager", "compiled" or "cuda_graph": how the training steps ran
    setup_seconds: float = 0.0  # graph capture or first compilation, already included in train_seconds
    batch_size: int = 0  # the batch it trained with (smaller than asked after out-of-memory retries)
    oom_retries: int = 0  # times the training started again at half the batch after running out of memory
    data_on: str = "memory"  # where training read its batches from: device (GPU copy), memory (host) or stream (files)
    ended_by: str = ""  # "stopping rule" (converged: patience ran out) or "epoch cap" (the safety limit)
    lr_cuts: int = 0  # plateau schedule: times the rate was cut

    @classmethod
    def from_dict(cls, data: dict) -> TrainResult:
        """A result read back from JSON; keys of older versions (stopped_early) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


