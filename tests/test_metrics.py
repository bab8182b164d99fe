"""Classification metrics agree with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from factory.tasks.classification import softmax_topk
from factory.tasks.classification.metrics import classification_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(5)]
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 5, 300))
    y_pred[y_pred == 4] = 3  # class 4 never predicted: precision undefined -> 0 like zero_division=0
    m = classification_metrics(y_true, y_pred, classes)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for ours, avg in (("precision_macro", "precision"), ("recall_macro", "recall"), ("f1_macro", "f1")):
        fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[avg]
        assert m[ours] == pytest.approx(fn(y_true, y_pred, average="macro", labels=range(5), zero_division=0))
    per = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    for i, c in enumerate(classes):
        assert m["per_class"][c]["precision"] == pytest.approx(per[0][i])
        assert m["per_class"][c]["recall"] == pytest.approx(per[1][i])
        assert m["per_class"][c]["f1"] == pytest.approx(per[2][i])
        assert m["per_class"][c]["support"] == per[3][i]
    assert m["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=range(5)).tolist()


def test_softmax_topk_orders_and_normalises():
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]])
    out = softmax_topk(logits, ["a", "b", "c"], k=2)
    assert [r["label"] for r in out[0]] == ["b", "c"]
    assert out[1][0]["label"] == "c" and out[1][0]["score"] == pytest.approx(np.exp(5) / (2 + np.exp(5)))
