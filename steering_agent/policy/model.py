"""The steering network: a PilotNet-style CNN per frame, an LSTM across frames, a tanh head.

`SteeringNet` holds no episode state: the caller passes the state in and gets it back
(`steering_agent.policy.policy.SteeringPolicy` owns it between frames). Architectures:

- `cnn_lstm`: the encoder feeds an LSTM; state (h, c), each [layers, B, hidden].
- `cnn`: the single-frame baseline; the encoder feeds a feed-forward layer of similar
  size instead of the LSTM; no state (None is passed through).
- `cnn_stack`: the frame-stack baseline (DonkeyCar's and komanda's windows): the last
  `stack` frames as 3 * stack input channels (oldest first), re-run every frame, then the
  feed-forward layer of `cnn`. Its state is the window's past: the last `stack - 1`
  normalised frames as a 1-tuple `(frames,)` of [stack - 1, B, C * H * W], the same
  [slots, batch, features] layout as the LSTM's state, so callers that carry, detach,
  zero or index the state by row (training's truncated BPTT, the steppers) treat both
  alike. A zero row (the initial state, or a row zeroed by a reset) means "no past
  frame": the window is then filled with copies of the row's first frame, in training
  and in stepping alike (a normalised uint8 frame is never exactly zero).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

ARCHS = ("cnn_lstm", "cnn", "cnn_stack")
# (h, c) of cnn_lstm, (past frames,) of cnn_stack, None for cnn
State = tuple[torch.Tensor, ...] | None


@dataclass(frozen=True)
class ModelConfig:
    """Network shape.

    Attributes:
        arch: "cnn_lstm" (recurrent), "cnn" (single-frame baseline) or "cnn_stack"
            (frame-stack baseline).
        in_channels: image channels (3).
        height: input height (PilotNet: 66).
        width: input width (PilotNet: 200).
        feature_dim: per-frame feature size after the encoder's linear layer.
        hidden_dim: LSTM hidden size (or the baseline's feed-forward width).
        lstm_layers: number of stacked LSTM layers.
        dropout: dropout on the per-frame features while training.
        stack: frames per window of `cnn_stack` (>= 2); ignored by the other archs and
            left out of their `to_dict` (their checkpoints stay as before).
    """

    arch: str = "cnn_lstm"
    in_channels: int = 3
    height: int = 66
    width: int = 200
    feature_dim: int = 128
    hidden_dim: int = 64
    lstm_layers: int = 1
    dropout: float = 0.2
    stack: int = 4

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig: arch {self.arch!r} is not one of {ARCHS}")
        if self.arch == "cnn_stack" and not (isinstance(self.stack, int) and self.stack >= 2):
            raise ValueError(f"ModelConfig: stack ({self.stack!r}) must be an int >= 2")

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.arch != "cnn_stack":
            del d["stack"]
        return d

    @property
    def encoder_channels(self) -> int:
        """Input channels of the convolutions: the frame's, times `stack` for cnn_stack."""
        return self.in_channels * (self.stack if self.arch == "cnn_stack" else 1)

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
        c = cfg.encoder_channels
        self.convs = _conv_stack(c)
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, c, cfg.height, cfg.width)).numel()
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(n_flat, cfg.feature_dim), nn.ELU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))


class SteeringNet(nn.Module):
    """CNN (+ LSTM, or over a frame stack) steering regressor, output in [-1, 1]."""

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
        """Whether the network has an LSTM (`cnn_lstm`)."""
        return self.lstm is not None

    @property
    def stacked(self) -> bool:
        """Whether the network runs on windows of frames (`cnn_stack`)."""
        return self.cfg.arch == "cnn_stack"

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors (ONNX I/O: name + "0" in, name + "n" out)."""
        if self.recurrent:
            return ("h", "c")
        return ("stack",) if self.stacked else ()

    def state_shapes(self, batch: int) -> tuple[tuple[int, ...], ...]:
        """Shapes of the state tensors for `batch` streams; the batch is always dim 1."""
        cfg = self.cfg
        if self.recurrent:
            return ((cfg.lstm_layers, batch, cfg.hidden_dim),) * 2
        if self.stacked:
            return ((cfg.stack - 1, batch, cfg.in_channels * cfg.height * cfg.width),)
        return ()

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """Zeros: (h, c) for `cnn_lstm`, (no past frames,) for `cnn_stack` (module doc);
        None for the `cnn` baseline."""
        shapes = self.state_shapes(batch)
        if not shapes:
            return None
        return tuple(torch.zeros(shape, device=device) for shape in shapes)

    def _past(self, first: torch.Tensor, state: State) -> torch.Tensor:
        """The window's past [B, stack - 1, C, H, W] from the state; rows without a past
        (zero) get copies of `first` [B, C, H, W]."""
        b, k = first.shape[0], self.cfg.stack - 1
        fill = first.unsqueeze(1).expand(b, k, *first.shape[1:])
        if state is None:
            return fill
        buf = state[0]
        past = buf.transpose(0, 1).reshape(fill.shape)
        fresh = buf.abs().amax(dim=2).amax(dim=0) == 0.0  # [B]
        return torch.where(fresh.view(b, 1, 1, 1, 1), fill, past)

    def _stack_forward(self, frames: torch.Tensor, state: State):
        b, t = frames.shape[:2]
        k = self.cfg.stack
        full = torch.cat([self._past(frames[:, 0], state), frames], dim=1)  # [B, T+k-1, ...]
        # window t = frames t .. t+k-1 of `full`, oldest first, as channels
        windows = torch.cat([full[:, j : j + t] for j in range(k)], dim=2)
        feats = self.encoder(windows.reshape(b * t, *windows.shape[2:])).reshape(b, t, -1)
        new = full[:, t:].reshape(b, k - 1, -1).transpose(0, 1).contiguous()
        return self.head(self.temporal(feats)).squeeze(-1), (new,)

    def forward(self, frames: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """Steer for every frame of a batch of sequences.

        Args:
            frames: float [B, T, C, H, W], normalised (`preprocess.normalize`).
            state: the state from the previous call (`initial_state`); None means zeros.

        Returns:
            steer [B, T] in [-1, 1], and the state after the last frame (None for `cnn`).
        """
        if self.stacked:
            return self._stack_forward(frames, state)
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
            state: from the previous step (`initial_state`); None means zeros.

        Returns:
            steer [B] in [-1, 1], and the state after this frame (None for `cnn`).
        """
        if self.stacked:
            b, k = frames.shape[0], self.cfg.stack
            past = self._past(frames, state).reshape(b, -1, *frames.shape[2:])
            x = torch.cat([past, frames], dim=1)  # [B, k * C, H, W], oldest first
            out = self.head(self.temporal(self.encoder(x))).squeeze(-1)
            new = x.reshape(b, k, -1)[:, 1:].transpose(0, 1).contiguous()
            return out, (new,)
        feats = self.encoder(frames)
        if self.lstm is None:
            return self.head(self.temporal(feats)).squeeze(-1), state
        if state is None:
            state = self.initial_state(frames.shape[0], frames.device)
        h0, c0 = state
        x, hs, cs = feats, [], []
        for layer in range(self.cfg.lstm_layers):
            x, c = torch.lstm_cell(  # one fused cell per layer (gate order i, f, g, o)
                x,
                (h0[layer], c0[layer]),
                getattr(self.lstm, f"weight_ih_l{layer}"),
                getattr(self.lstm, f"weight_hh_l{layer}"),
                getattr(self.lstm, f"bias_ih_l{layer}"),
                getattr(self.lstm, f"bias_hh_l{layer}"),
            )
            hs.append(x)
            cs.append(c)
        return self.head(x).squeeze(-1), (torch.stack(hs), torch.stack(cs))


def _functional(seq: nn.Sequential):
    """The layers of `seq` as plain calls on their parameters, one Python function
    without nn.Module's per-call machinery (hooks, __getattr__): Linear, ELU and Tanh as
    their functional ops (the same kernels, so the same numbers; ELU in place where it
    follows a Linear, on that layer's new output), any other layer called as it is."""
    ops = []
    for layer in seq:
        if type(layer) is nn.Linear:
            ops.append((F.linear, (layer.weight, layer.bias)))
        elif type(layer) is nn.ELU:  # in place only on a Linear's fresh output
            ops.append((F.elu, (layer.alpha, bool(ops) and ops[-1][0] is F.linear)))
        elif type(layer) is nn.Tanh:
            ops.append((torch.tanh, ()))
        else:
            ops.append((layer, ()))

    def run(x: torch.Tensor) -> torch.Tensor:
        for op, args in ops:
            x = op(x, *args)
        return x

    return run


def lean_step(model: SteeringNet):
    """`model.step` for inference, with what follows the encoder (the LSTM cells and the
    head, or the baseline's feed-forward layer and head) as plain calls on parameters
    looked up once (`_functional`): the same kernels in the same order, so the same
    outputs, for about half that part's Python overhead at batch 1. The encoder runs as
    `model.encoder`, exactly as the bare encoder is benchmarked.

    The parameters are captured now: make it again after moving the model to another
    device or dtype (loading a state dict in place is fine). `cnn_stack` has no lean form
    (its step is the model's own); call it under `torch.inference_mode()` or `no_grad`.
    """
    if model.stacked:
        return model.step
    encoder, head = model.encoder, _functional(model.head)
    if model.lstm is None:
        temporal = _functional(model.temporal)

        def step_cnn(frames: torch.Tensor, state: State = None):
            return head(temporal(encoder(frames))).squeeze(-1), state

        return step_cnn
    layers = [
        tuple(
            getattr(model.lstm, f"{w}_l{k}")
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        for k in range(model.cfg.lstm_layers)
    ]
    if len(layers) == 1:
        (weights,) = layers

        def step_one_layer(frames: torch.Tensor, state: State = None):
            if state is None:
                state = model.initial_state(frames.shape[0], frames.device)
            h, c = torch.lstm_cell(encoder(frames), (state[0][0], state[1][0]), *weights)
            return head(h).squeeze(-1), (h.unsqueeze(0), c.unsqueeze(0))

        return step_one_layer

    def step_layers(frames: torch.Tensor, state: State = None):
        if state is None:
            state = model.initial_state(frames.shape[0], frames.device)
        h0, c0 = state
        x, hs, cs = encoder(frames), [], []
        for k, weights in enumerate(layers):
            x, c = torch.lstm_cell(x, (h0[k], c0[k]), *weights)
            hs.append(x)
            cs.append(c)
        return head(x).squeeze(-1), (torch.stack(hs), torch.stack(cs))

    return step_layers


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
