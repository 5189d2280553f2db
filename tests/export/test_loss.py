"""Every torch.nn loss module in an inference export (a model that returns its loss), each
documented option against eager at fp32, batch dynamic (compared at two batch sizes)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import fxonnx
from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower

# KLDivLoss(reduction="mean") warns that it is not the KL divergence; it is still an option
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")

REDUCTIONS = ["mean", "sum", "none"]
C = 5


def _gen(b: int) -> torch.Generator:
    return torch.Generator().manual_seed(b)


def _logits_classes(b: int, ignore: int | None = None) -> tuple:
    g = _gen(b)
    x = torch.randn(b, C, generator=g) * 2
    t = torch.randint(0, C, (b,), generator=g)
    if ignore is not None:
        t[0] = ignore
    return x, t


def _logits_kdim(b: int, ignore: int | None = None) -> tuple:
    g = _gen(b)
    x = torch.randn(b, C, 3, 2, generator=g)
    t = torch.randint(0, C, (b, 3, 2), generator=g)
    if ignore is not None:
        t[0, 1] = ignore
        t[-1, 0, 0] = ignore
    return x, t


def _logits_3d(b: int, ignore: int | None = None) -> tuple:
    g = _gen(b)
    x = torch.randn(b, C, 4, generator=g)
    t = torch.randint(0, C, (b, 4), generator=g)
    if ignore is not None:
        t[:, 0] = ignore
    return x, t


def _logits_probs(b: int) -> tuple:
    g = _gen(b)
    return torch.randn(b, C, generator=g), torch.randn(b, C, generator=g).softmax(-1)


def _logits_probs_kdim(b: int) -> tuple:
    g = _gen(b)
    return torch.randn(b, C, 3, generator=g), torch.randn(b, C, 3, generator=g).softmax(1)


WEIGHT = torch.tensor([0.5, 2.0, 1.0, 0.1, 3.0])

# name: (module factory, inputs at batch b, unbatched inputs or None)
CE_OPTIONS = {
    "plain": (dict(), _logits_classes),
    "weight": (dict(weight=WEIGHT), _logits_classes),
    "ignore_index": (dict(ignore_index=2), lambda b: _logits_classes(b, 2)),
    "ignore_index_weight": (
        dict(weight=WEIGHT, ignore_index=-1),
        lambda b: _logits_classes(b, -1),
    ),
    "label_smoothing": (dict(label_smoothing=0.2), _logits_classes),
    "label_smoothing_weight_ignore": (
        dict(label_smoothing=0.3, weight=WEIGHT, ignore_index=1),
        lambda b: _logits_classes(b, 1),
    ),
    "probs": (dict(), _logits_probs),
    "probs_weight_smoothing": (dict(weight=WEIGHT, label_smoothing=0.1), _logits_probs),
    "probs_kdim": (dict(weight=WEIGHT), _logits_probs_kdim),
    "kdim": (dict(), _logits_kdim),
    "kdim_weight_ignore_smoothing": (
        dict(weight=WEIGHT, ignore_index=0, label_smoothing=0.25),
        lambda b: _logits_kdim(b, 0),
    ),
    "3d_ignore_default": (dict(), lambda b: _logits_3d(b, -100)),
}


class LossOf(nn.Module):
    """A model that returns its loss: a linear layer, then the loss module."""

    def __init__(self, loss: nn.Module, features: int | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.proj = nn.Identity() if features is None else nn.Linear(features, features)

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.loss(self.proj(x), *rest)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", CE_OPTIONS)
def test_cross_entropy_matches_eager(onnx_matches: Callable, option: str, reduction: str) -> None:
    kwargs, make = CE_OPTIONS[option]
    model = onnx_matches(LossOf(nn.CrossEntropyLoss(reduction=reduction, **kwargs)), make)
    assert {n.domain for n in model.graph.node} <= {""}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", [o for o in CE_OPTIONS if not o.startswith("probs")])
def test_nll_matches_eager(onnx_matches: Callable, option: str, reduction: str) -> None:
    kwargs, make = CE_OPTIONS[option]
    kwargs = {k: v for k, v in kwargs.items() if k != "label_smoothing"}

    def log_probs(b: int) -> tuple:
        x, t = make(b)
        return x.log_softmax(1), t

    onnx_matches(LossOf(nn.NLLLoss(reduction=reduction, **kwargs)), log_probs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(weight=WEIGHT, ignore_index=3), dict(label_smoothing=0.2, weight=WEIGHT)],
    ids=["plain", "weight_ignore", "smoothing_weight"],
)
@pytest.mark.parametrize("module", [nn.CrossEntropyLoss, nn.NLLLoss])
def test_unbatched_class_losses(
    onnx_matches: Callable, module: type, kwargs: dict, reduction: str
) -> None:
    """Input (C,) and a 0-d target; the ignored target is a case of its own."""
    if module is nn.NLLLoss:
        kwargs = {k: v for k, v in kwargs.items() if k != "label_smoothing"}
    for target in (1, 3):
        t = torch.tensor(target)
        loss = module(reduction=reduction, **kwargs)
        onnx_matches(
            LossOf(loss), lambda b, t=t: (torch.randn(C, generator=_gen(b)), t), dynamic=False
        )


def test_unbatched_soft_targets(onnx_matches: Callable) -> None:
    def make(b: int) -> tuple:
        g = _gen(b)
        return torch.randn(C, generator=g), torch.rand(C, generator=g).softmax(0)

    for reduction in REDUCTIONS:
        loss = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1, weight=WEIGHT)
        onnx_matches(LossOf(loss), make, dynamic=False)


def test_cross_entropy_all_ignored_mean_is_nan_like_eager(onnx_matches: Callable) -> None:
    def make(b: int) -> tuple:
        x, t = _logits_classes(b)
        return x, torch.full_like(t, -100)

    with pytest.raises(AssertionError):  # eager is NaN; assert_allclose treats NaN == NaN
        assert not torch.isnan(nn.CrossEntropyLoss()(*make(2)))
    onnx_matches(LossOf(nn.CrossEntropyLoss()), make)


def test_compiled_classifier_returns_its_loss() -> None:
    """fxonnx.compile on a model returning (loss, logits), verified at two batch sizes."""

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, C)
            self.loss = nn.CrossEntropyLoss(weight=WEIGHT, ignore_index=0, label_smoothing=0.1)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
            logits = self.fc(x)
            return self.loss(logits, y), logits

    torch.manual_seed(0)
    model = Classifier().eval()
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    cm = fxonnx.compile(model, (x, y), provider="cpu")
    assert cm.report.ok
    x, y = torch.randn(4, 8), torch.tensor([4, 0, 0, 1])
    loss, logits = cm(x, y)
    with torch.no_grad():
        expected = model(x, y)
    torch.testing.assert_close(loss, expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, expected[1], rtol=1e-5, atol=1e-6)


def test_cross_entropy_in_a_model_with_labels(onnx_matches: Callable) -> None:
    """The shape of a library LM head: logits (N, T, V) flattened, labels shifted, -100 pads."""

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = nn.Linear(8, C)

        def forward(self, h: torch.Tensor, labels: torch.Tensor) -> tuple:
            logits = self.lm(h)
            shift = logits[:, :-1].reshape(-1, C)
            loss = nn.functional.cross_entropy(shift, labels[:, 1:].reshape(-1))
            return loss, logits

    def make(b: int) -> tuple:
        g = _gen(b)
        labels = torch.randint(0, C, (b, 6), generator=g)
        labels[:, -2:] = -100
        return torch.randn(b, 6, 8, generator=g), labels

    onnx_matches(Head(), make)


# -- the other losses: (module, inputs at batch b) -------------------------------------------
def _pair(b: int) -> tuple:
    g = _gen(b)
    return torch.randn(b, 4, 3, generator=g), torch.randn(b, 4, 3, generator=g)


def _probs_pair(b: int) -> tuple:
    g = _gen(b)
    x = torch.rand(b, 4, generator=g)
    x[0, 0], x[0, 1] = 0.0, 1.0  # log clamps at -100
    t = torch.rand(b, 4, generator=g)
    t[0, 2] = 1.0
    return x, t


def _logit_targets(b: int) -> tuple:
    g = _gen(b)
    return torch.randn(b, 4, generator=g) * 30, torch.rand(b, 4, generator=g)


def _kl(b: int) -> tuple:
    g = _gen(b)
    t = torch.rand(b, 4, generator=g).softmax(-1)
    t[0, 0] = 0.0
    return torch.randn(b, 4, generator=g).log_softmax(-1), t


def _kl_log(b: int) -> tuple:
    g = _gen(b)
    return torch.randn(b, 4, generator=g).log_softmax(-1), torch.randn(b, 4, generator=g)


def _signs(b: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=_gen(b + 100)).float() * 2 - 1


def _cosine(b: int) -> tuple:
    x1, x2 = _pair(b)
    return x1[:, :, 0], x2[:, :, 0], _signs(b, (b,))


def _ranking(b: int) -> tuple:
    g = _gen(b)
    return torch.randn(b, generator=g), torch.randn(b, generator=g), _signs(b, (b,))


def _hinge(b: int) -> tuple:
    x, _ = _pair(b)
    return x.abs(), _signs(b, x.shape)


def _soft_margin(b: int) -> tuple:
    x, _ = _pair(b)
    return x * 20, _signs(b, x.shape)


def _multi_margin(b: int) -> tuple:
    return _logits_classes(b)


def _multilabel(b: int) -> tuple:
    g = _gen(b)
    x = torch.randn(b, C, generator=g)
    t = torch.full((b, C), -1, dtype=torch.long)
    for i in range(b):
        n = i % C + 1
        t[i, :n] = torch.randperm(C, generator=g)[:n]
    t[0, 2], t[0, 3] = -1, 4  # entries after the first -1 are not targets
    t[-1, 1] = t[-1, 0]  # a repeated target counts twice, as in eager
    return x, t


def _poisson(b: int) -> tuple:
    g = _gen(b)
    t = torch.poisson(torch.rand(b, 4, generator=g) * 4, generator=g)
    return torch.randn(b, 4, generator=g), t


def _poisson_rates(b: int) -> tuple:
    x, t = _poisson(b)
    return x.exp(), t


def _triplet(b: int) -> tuple:
    g = _gen(b)
    return tuple(torch.randn(b, 6, generator=g) for _ in range(3))


def _gauss(b: int) -> tuple:
    g = _gen(b)
    x, t = torch.randn(b, 4, generator=g), torch.randn(b, 4, generator=g)
    return x, t, torch.rand(b, 4, generator=g)


def _gauss_homoscedastic(b: int) -> tuple:
    x, t, v = _gauss(b)
    return x, t, v[:, :1]


OTHER: dict[str, tuple[Callable[[str], nn.Module], Callable[[int], tuple]]] = {
    "mse": (lambda r: nn.MSELoss(reduction=r), _pair),
    "l1": (lambda r: nn.L1Loss(reduction=r), _pair),
    "smooth_l1": (lambda r: nn.SmoothL1Loss(reduction=r), _pair),
    "smooth_l1_beta": (lambda r: nn.SmoothL1Loss(reduction=r, beta=0.3), _pair),
    "smooth_l1_beta0": (lambda r: nn.SmoothL1Loss(reduction=r, beta=0.0), _pair),
    "huber": (lambda r: nn.HuberLoss(reduction=r), _pair),
    "huber_delta": (lambda r: nn.HuberLoss(reduction=r, delta=0.4), _pair),
    "bce": (lambda r: nn.BCELoss(reduction=r), _probs_pair),
    "bce_weight": (
        lambda r: nn.BCELoss(weight=torch.tensor([1.0, 2.0, 0.5, 0.0]), reduction=r),
        _probs_pair,
    ),
    "bce_logits": (lambda r: nn.BCEWithLogitsLoss(reduction=r), _logit_targets),
    "bce_logits_weight_pos": (
        lambda r: nn.BCEWithLogitsLoss(
            weight=torch.tensor([1.0, 2.0, 0.5, 3.0]),
            pos_weight=torch.tensor([0.5, 1.0, 4.0, 2.0]),
            reduction=r,
        ),
        _logit_targets,
    ),
    "kl_div": (lambda r: nn.KLDivLoss(reduction=r if r != "mean" else "batchmean"), _kl),
    "kl_div_mean": (lambda r: nn.KLDivLoss(reduction=r), _kl),
    "kl_div_log_target": (lambda r: nn.KLDivLoss(reduction=r, log_target=True), _kl_log),
    "cosine_embedding": (lambda r: nn.CosineEmbeddingLoss(reduction=r), _cosine),
    "cosine_embedding_margin": (lambda r: nn.CosineEmbeddingLoss(0.3, reduction=r), _cosine),
    "margin_ranking": (lambda r: nn.MarginRankingLoss(reduction=r), _ranking),
    "margin_ranking_margin": (lambda r: nn.MarginRankingLoss(0.5, reduction=r), _ranking),
    "hinge_embedding": (lambda r: nn.HingeEmbeddingLoss(reduction=r), _hinge),
    "hinge_embedding_margin": (lambda r: nn.HingeEmbeddingLoss(2.0, reduction=r), _hinge),
    "soft_margin": (lambda r: nn.SoftMarginLoss(reduction=r), _soft_margin),
    "multi_margin": (lambda r: nn.MultiMarginLoss(reduction=r), _multi_margin),
    "multi_margin_p2_margin_weight": (
        lambda r: nn.MultiMarginLoss(p=2, margin=0.7, weight=WEIGHT, reduction=r),
        _multi_margin,
    ),
    "multilabel_margin": (lambda r: nn.MultiLabelMarginLoss(reduction=r), _multilabel),
    "poisson_nll": (lambda r: nn.PoissonNLLLoss(reduction=r), _poisson),
    "poisson_nll_full": (lambda r: nn.PoissonNLLLoss(full=True, reduction=r), _poisson),
    "poisson_nll_rates_eps": (
        lambda r: nn.PoissonNLLLoss(log_input=False, full=True, eps=1e-3, reduction=r),
        _poisson_rates,
    ),
    "triplet_margin": (lambda r: nn.TripletMarginLoss(reduction=r), _triplet),
    "triplet_margin_p1_swap": (
        lambda r: nn.TripletMarginLoss(margin=2.0, p=1, eps=1e-3, swap=True, reduction=r),
        _triplet,
    ),
    "triplet_margin_p3": (lambda r: nn.TripletMarginLoss(p=3, reduction=r), _triplet),
    "gaussian_nll": (lambda r: nn.GaussianNLLLoss(reduction=r), _gauss),
    "gaussian_nll_full_eps_homoscedastic": (
        lambda r: nn.GaussianNLLLoss(full=True, eps=0.05, reduction=r),
        _gauss_homoscedastic,
    ),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", OTHER)
def test_loss_matches_eager(onnx_matches: Callable, name: str, reduction: str) -> None:
    make_loss, make = OTHER[name]
    model = onnx_matches(LossOf(make_loss(reduction)), make)
    assert {n.domain for n in model.graph.node} <= {""}


UNBATCHED = {
    "multi_margin": (nn.MultiMarginLoss, lambda: (torch.randn(C), torch.tensor(2))),
    "multi_margin_1_target": (nn.MultiMarginLoss, lambda: (torch.randn(C), torch.tensor([4]))),
    "multilabel_margin": (
        nn.MultiLabelMarginLoss,
        lambda: (torch.randn(C), torch.tensor([3, 0, -1, 1, 2])),
    ),
    "multi_margin_0d": (nn.MultiMarginLoss, lambda: (torch.tensor(0.3), torch.tensor(0))),
    "multilabel_margin_0d": (
        nn.MultiLabelMarginLoss,
        lambda: (torch.tensor(0.3), torch.tensor(0)),
    ),
    "triplet_margin": (nn.TripletMarginLoss, lambda: tuple(torch.randn(6) for _ in range(3))),
    "cosine_embedding": (
        nn.CosineEmbeddingLoss,
        lambda: (torch.randn(6), torch.randn(6), torch.tensor(-1.0)),
    ),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", UNBATCHED)
def test_unbatched_losses(onnx_matches: Callable, name: str, reduction: str) -> None:
    module, make = UNBATCHED[name]
    torch.manual_seed(0)
    inputs = make()
    model = LossOf(module(reduction=reduction))
    if reduction == "none" and name in (
        "multi_margin",
        "multilabel_margin",
        "multi_margin_0d",
        "multilabel_margin_0d",
    ):
        assert model(*inputs).shape == ()  # torch's traced shape says (1,)
        captured = capture(model, inputs, dynamic=False)
        with pytest.raises(ExportError, match="0-d tensor in eager but"):
            lower(captured)
        return
    onnx_matches(model, lambda b: inputs, dynamic=False)
