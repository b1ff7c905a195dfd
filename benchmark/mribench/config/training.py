"""The `training:` block: optimiser, schedule, stopping, precision, checkpoints."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mribench.config.strict import Strict
from mribench.config.types import Fraction, PosInt


class TrainingConfig(Strict):
    epochs: PosInt = Field(10, description="Maximum number of training epochs.")
    batch_size: Annotated[int, Field(ge=2)] = Field(
        32, description="Training batch size (at least 2: batch-norm cannot train on one image).")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="Optimizer.")
    lr: Annotated[float, Field(gt=0, le=10)] = Field(
        1e-3, description="Learning rate of the head (and of everything unless backbone_lr is given).")
    backbone_lr: Annotated[float, Field(gt=0, le=10)] | None = Field(
        None, description="Learning rate of the backbone; null: the same as lr.")
    layer_decay: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="Layer-wise learning-rate decay over the model's block groups: the top "
        "group trains at the backbone's rate (backbone_lr, else lr), each group below it at "
        "layer_decay times the rate of the one above; the head at lr. null: one backbone rate.")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="Weight decay.")
    momentum: Annotated[float, Field(ge=0, lt=1)] = Field(0.9, description="sgd only: momentum.")
    scheduler: Literal["none", "cosine", "step", "plateau"] = Field(
        "none", description="Learning-rate schedule.")
    step_size: PosInt = Field(10, description="step only: epochs between learning-rate drops.")
    gamma: Fraction = Field(0.1, description="step and plateau: factor of each learning-rate drop.")
    patience: PosInt | None = Field(
        None, description="Early stopping on validation loss after this many epochs without "
        "improvement; null: off.")
    # Study B's "best accuracy": also evaluate the test split every epoch and log the best value
    # as test_best_epoch_accuracy_peeking. It peeks at the test set, so it is never the headline.
    peek_test: bool = Field(
        False, description="Also evaluate the test split every epoch and log the best value as "
        "test_best_epoch_accuracy_peeking (Study B's 'best accuracy'); never the headline.")
    # loader worker processes; auto: one per spare core on CUDA (at most 8), none on CPU
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="Loader worker processes; auto: one per spare core on CUDA (at most 8), "
        "none on CPU.")
    # auto: bf16 autocast on CUDA devices that support it, fp16 + gradient scaler on older
    # ones, fp32 on CPU. Evaluation upcasts logits to float64; explanations run in fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA devices that support it, fp16 with a gradient "
        "scaler on older ones, fp32 on CPU.")
    # true: deterministic CUDA kernels, no cuDNN autotuning (bit-identical GPU reruns, slower)
    deterministic: bool = Field(
        False, description="Deterministic CUDA kernels, no cuDNN autotuning: bit-identical GPU reruns, "
        "slower.")
    compile: bool = Field(False, description="Wrap the trained module in torch.compile.")
    # Divergence: a non-finite loss stops the cell as FAILED at once. A large loss is judged over
    # a window, so a published configuration whose first batches spike and then recover (Study
    # B's VGG16 trained whole with Adam 1e-3: 760 at batch 2) is not stopped: the cell fails when
    # the loss stays above `max_loss` for `max_loss_batches` consecutive batches, or when an
    # epoch's mean loss is above it (null: non-finite only). Cross-entropy starts near
    # ln(classes); 100 means the right class gets a probability below e^-100 on average.
    max_loss: Annotated[float, Field(gt=0)] | None = Field(
        100.0, description="A cell fails as diverged when the batch loss stays above this for "
        "max_loss_batches consecutive batches or an epoch's mean is above it; null: only a non-finite "
        "loss stops it.")
    max_loss_batches: Annotated[int, Field(ge=1)] = Field(
        10, description="Consecutive batches above max_loss that stop a cell.")
    # frozen backbone without augmentation: compute its features once and train the head on
    # them (default). false recomputes the backbone every epoch, as the studies' Keras/PyTorch
    # scripts did, so seconds per epoch compare with theirs (Study B); the results are the same.
    feature_reuse: bool = Field(
        True, description="Frozen backbone without augmentation: compute its features once and train "
        "the head on them; false recomputes the backbone every epoch, as the studies' scripts did.")
    checkpoint_every: Annotated[int, Field(ge=0)] = Field(
        1, description="Epochs between checkpoints of the training state, from which a killed cell "
        "resumes (SIGTERM also writes one); 0: none.")
