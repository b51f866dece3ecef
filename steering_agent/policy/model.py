"""The steering network: a PilotNet-style CNN per frame, an LSTM across frames, a tanh head.

`SteeringNet` holds no episode state: the caller passes the LSTM state in and gets it
back (`steering_agent.policy.policy.SteeringPolicy` owns it between frames). With
`ModelConfig.arch == "cnn"` the same encoder feeds a feed-forward layer of similar
size instead of the LSTM: the single-frame baseline, and the state is passed through.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

ARCHS = ("cnn_lstm", "cnn")
State = tuple[torch.Tensor, torch.Tensor] | None


@dataclass(frozen=True)
class ModelConfig:
    """Network shape.

    Attributes:
        arch: "cnn_lstm" (recurrent) or "cnn" (single-frame baseline).
        in_channels: image channels (3).
        height: input height (PilotNet: 66).
        width: input width (PilotNet: 200).
        feature_dim: per-frame feature size after the encoder's linear layer.
        hidden_dim: LSTM hidden size (or the baseline's feed-forward width).
        lstm_layers: number of stacked LSTM layers.
        dropout: dropout on the per-frame features while training.
    """

    arch: str = "cnn_lstm"
    in_channels: int = 3
    height: int = 66
    width: int = 200
    feature_dim: int = 128
    hidden_dim: int = 64
    lstm_layers: int = 1
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig: arch {self.arch!r} is not one of {ARCHS}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**d)


def _conv_stack(in_channels: int) -> nn.Sequential:
    """PilotNet's five convolutions (24-36-48 5x5 stride 2, then 64-64 3x3), ELU."""
    layers: list[nn.Module] = []
    spec = [(24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)]
    c = in_channels
    for out_c, k, s in spec:
        layers += [nn.Conv2d(c, out_c, k, stride=s), nn.ELU()]
        c = out_c
    return nn.Sequential(*layers)


class FrameEncoder(nn.Module):
    """[N, C, H, W] normalised frames -> [N, feature_dim] features."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.convs = _conv_stack(cfg.in_channels)
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, cfg.in_channels, cfg.height, cfg.width)).numel()
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(n_flat, cfg.feature_dim), nn.ELU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))


class SteeringNet(nn.Module):
    """CNN (+ LSTM) steering regressor, output in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = FrameEncoder(cfg)
        if cfg.arch == "cnn_lstm":
            self.lstm = nn.LSTM(
                cfg.feature_dim, cfg.hidden_dim, num_layers=cfg.lstm_layers, batch_first=True
            )
        else:
            self.lstm = None
            self.temporal = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.hidden_dim), nn.ELU())
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden_dim, 32), nn.ELU(), nn.Linear(32, 1), nn.Tanh()
        )

    @property
    def recurrent(self) -> bool:
        return self.lstm is not None

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """Zero (h, c), each [layers, batch, hidden]; None for the `cnn` baseline."""
        if self.lstm is None:
            return None
        shape = (self.cfg.lstm_layers, batch, self.cfg.hidden_dim)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(self, frames: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """Steer for every frame of a batch of sequences.

        Args:
            frames: float [B, T, C, H, W], normalised (`preprocess.normalize`).
            state: (h, c) from the previous call; None means zeros.

        Returns:
            steer [B, T] in [-1, 1], and the state after the last frame (None for `cnn`).
        """
        b, t = frames.shape[:2]
        feats = self.encoder(frames.reshape(b * t, *frames.shape[2:])).reshape(b, t, -1)
        if self.lstm is None:
            hidden = self.temporal(feats)
        else:
            hidden, state = self.lstm(feats, state)
        return self.head(hidden).squeeze(-1), state

    def step(self, frames: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """One frame per stream: `forward(frames[:, None], state)` without the sequence machinery.

        The per-frame path of `steering_agent.policy.policy`: the LSTM runs as one cell per layer
        (PyTorch's gate order i, f, g, o), which for a single time step is about four times
        cheaper than `nn.LSTM`. For inference (dropout between LSTM layers is not applied).

        Args:
            frames: float [B, C, H, W], normalised.
            state: (h, c) [layers, B, hidden] from the previous step; None means zeros.

        Returns:
            steer [B] in [-1, 1], and the state after this frame (None for `cnn`).
        """
        feats = self.encoder(frames)
        if self.lstm is None:
            return self.head(self.temporal(feats)).squeeze(-1), state
        if state is None:
            state = self.initial_state(frames.shape[0], frames.device)
        h0, c0 = state
        x, hs, cs = feats, [], []
        for layer in range(self.cfg.lstm_layers):
            gates = F.linear(
                x,
                getattr(self.lstm, f"weight_ih_l{layer}"),
                getattr(self.lstm, f"bias_ih_l{layer}"),
            )
            gates += F.linear(
                h0[layer],
                getattr(self.lstm, f"weight_hh_l{layer}"),
                getattr(self.lstm, f"bias_hh_l{layer}"),
            )
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f).mul_(c0[layer]).addcmul_(torch.sigmoid(i), torch.tanh(g))
            x = torch.sigmoid(o).mul_(torch.tanh(c))
            hs.append(x)
            cs.append(c)
        return self.head(x).squeeze(-1), (torch.stack(hs), torch.stack(cs))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
