"""The tutorial models this project grew from, kept as close to their sources as possible.

They are small, but each exercises a different corner of capture and lowering: `view` on a
dynamic batch, functional vs. module activations, log_softmax, dropout in eval mode, an RNN with
an explicit hidden state, and hand-written attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fxonnx.models._registry import register

_TUTORIAL = "tutorial"


class MLP(nn.Module):
    """Two Linear layers with nothing in between, exactly as the tutorial wrote it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 30)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class SimpleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 5)
        self.fc2 = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class LinearRegression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class LogisticRegression(nn.Module):
    def __init__(self, in_features: int = 4) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


class MyNet(nn.Module):
    """Uses an `nn.ReLU` module (not the functional form) between two Linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


class SimpleCNN(nn.Module):
    """Flattens with `x.view(x.size(0), -1)`, the idiom that bakes in the batch size if traced."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv(x)))
        x = x.view(x.size(0), -1)
        return self.fc(x)


class LeNetCifar(nn.Module):
    """The CIFAR-10 LeNet of the PyTorch 60-minute blitz."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class MnistCNN(nn.Module):
    """The pytorch/examples MNIST net, on 16x16 inputs so the flattened size is 64*6*6."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 6 * 6, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class SpeechCNN(nn.Module):
    """The MNIST net without the pool, classifying 30 speech commands from 10x10 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 6 * 6, 128)
        self.fc2 = nn.Linear(128, 30)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class CNNMnistPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 6 * 6, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class SelfAttention(nn.Module):
    """Single-head scaled dot-product attention: softmax(q k^T / sqrt(d)) v."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.scale = 1.0 / math.sqrt(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        return torch.matmul(torch.softmax(scores, dim=-1), v)


@register(
    "mlp",
    description="Linear 10->20->30, no activation",
    input_shapes=(("N", 10),),
    tags=(_TUTORIAL,),
)
def mlp() -> nn.Module:
    return MLP()


@register(
    "simple_net",
    description="Linear 2->5, ReLU, Linear 5->1",
    input_shapes=(("N", 2),),
    tags=(_TUTORIAL,),
)
def simple_net() -> nn.Module:
    return SimpleNet()


@register(
    "linear_regression",
    description="Linear 1->1",
    input_shapes=(("N", 1),),
    tags=(_TUTORIAL,),
)
def linear_regression() -> nn.Module:
    return LinearRegression()


@register(
    "logistic_regression",
    description="sigmoid(Linear 4->1)",
    input_shapes=(("N", 4),),
    tags=(_TUTORIAL,),
)
def logistic_regression() -> nn.Module:
    return LogisticRegression()


@register(
    "my_net",
    description="Linear 16->32, nn.ReLU module, Linear 32->4",
    input_shapes=(("N", 16),),
    tags=(_TUTORIAL,),
)
def my_net() -> nn.Module:
    return MyNet()


@register(
    "simple_cnn",
    description="Conv-ReLU-MaxPool, view(N, -1), Linear to 10 classes",
    input_shapes=(("N", 3, 56, 56),),
    tags=(_TUTORIAL, "conv"),
)
def simple_cnn() -> nn.Module:
    return SimpleCNN()


@register(
    "lenet_cifar",
    description="LeNet-5 for CIFAR-10: two conv-pool stages, FC 120-84-10",
    input_shapes=(("N", 3, 32, 32),),
    tags=(_TUTORIAL, "conv"),
)
def lenet_cifar() -> nn.Module:
    return LeNetCifar()


@register(
    "mnist_cnn",
    description="pytorch/examples MNIST CNN with dropout and log_softmax",
    input_shapes=(("N", 1, 16, 16),),
    tags=(_TUTORIAL, "conv"),
)
def mnist_cnn() -> nn.Module:
    return MnistCNN()


@register(
    "speech_cnn",
    description="MNIST-style CNN without pooling, 30 speech-command classes",
    input_shapes=(("N", 1, 10, 10),),
    tags=(_TUTORIAL, "conv"),
)
def speech_cnn() -> nn.Module:
    return SpeechCNN()


@register(
    "cnn_mnist_pool",
    description="Two padded conv-ReLU-pool stages, FC 128 -> 10",
    input_shapes=(("N", 1, 24, 24),),
    tags=(_TUTORIAL, "conv"),
)
def cnn_mnist_pool() -> nn.Module:
    return CNNMnistPool()


@register(
    "self_attention",
    description="Single-head scaled dot-product self-attention, d=32",
    input_shapes=(("N", 8, 32),),
    tags=(_TUTORIAL, "attention"),
)
def self_attention() -> nn.Module:
    return SelfAttention()
