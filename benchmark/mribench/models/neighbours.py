"""k-nearest-neighbour classification on a frozen backbone's pooled features (strategy knn).

The head holds the L2-normalised training features; an image's class probabilities are the
vote fractions of its k most cosine-similar training images (scikit-learn's
KNeighborsClassifier(metric="cosine", weights="uniform").predict_proba gives the same numbers).
Ties are deterministic: among equal similarities the training image that comes first in the
split wins (a stable sort); among equal vote counts argmax takes the first class.

The forward pass returns log-probabilities as logits (softmax gives the vote fractions back),
so the engine's evaluate, the test metrics, LIME and the faithfulness checks treat the knn
classifier like any other. A class with no vote gets probability FLOOR, not 0, so the log
loss stays finite (scikit-learn's log_loss clips the same way).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FLOOR = 1e-7
CHUNK = 1024  # query rows per similarity matrix: bounded memory on the full 7023 set


class KnnHead(nn.Module):
    """features [B, F] -> logits [B, K] (log vote fractions of the k nearest training images)."""

    def __init__(self, num_classes: int, k: int):
        super().__init__()
        self.num_classes, self.k = num_classes, k
        self.register_buffer("bank", torch.zeros(0, 0))
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a fitted head's index has the shape of its training features ([N, F], N labels); a
        # fresh head (a logged model being rebuilt) takes the shapes it is given
        for name in ("bank", "labels"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def k_used(self) -> int:
        """k, or the number of training images when there are fewer."""
        return min(self.k, len(self.labels))

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> "KnnHead":
        if features.dim() != 2 or len(features) != len(labels) or not len(labels):
            raise ValueError(f"knn: need pooled features [N, F] and N labels, got "
                             f"{tuple(features.shape)} and {len(labels)} labels (N >= 1)")
        device = self.bank.device
        self.bank = F.normalize(features.float(), dim=1).to(device)
        self.labels = labels.long().to(device)
        return self

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        if not len(self.labels):
            raise RuntimeError("knn head used before fit(): no training features")
        out = []
        query = F.normalize(features.float(), dim=1)
        for rows in query.split(CHUNK):
            # fp32 even under the training precision's autocast: bf16 similarities would
            # reorder near neighbours
            with torch.autocast(rows.device.type, enabled=False):
                sims = rows @ self.bank.T
            # stable: equal similarities keep the training order, so ties never depend on
            # the device or the sort implementation
            order = torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :self.k_used]
            votes = F.one_hot(self.labels[order], self.num_classes).sum(dim=1)
            out.append(votes.float() / self.k_used)
        return torch.cat(out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2:
            raise ValueError(f"knn head needs pooled feature vectors [B, F], got "
                             f"{tuple(features.shape)}")
        return torch.log(self.probabilities(features).clamp_min(FLOOR))
