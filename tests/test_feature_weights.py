"""The variable-selection summary: a row-weighted mean over batches, written and read back."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from atft_core.feature_weights import FeatureWeights, read_feature_weights


def test_mean_is_over_rows_not_batches_and_reads_back_sorted(tmp_path):
    acc = FeatureWeights()
    acc.add(SimpleNamespace(feature_weights=torch.tensor([[0.6, 0.3, 0.1]])))           # 1 row
    acc.add(SimpleNamespace(feature_weights=torch.tensor([[0.2, 0.2, 0.6]] * 3)))       # 3 rows
    assert acc.mean() == pytest.approx([0.3, 0.225, 0.475])
    path = tmp_path / "feature_weights.json"
    acc.write(path, ["a", "b", "c"], "val", 2)
    weights, facts = read_feature_weights(path)
    assert weights["feature"].to_list() == ["c", "a", "b"]
    assert facts == {"split": "val", "best_epoch": 2, "rows": 4, "uniform": pytest.approx(1 / 3)}
    with pytest.raises(ValueError, match="3 weights for 2 features"):
        acc.write(path, ["a", "b"], "val", 2)


def test_nothing_seen_writes_nothing_and_a_missing_file_reads_as_none(tmp_path):
    path = tmp_path / "feature_weights.json"
    FeatureWeights().write(path, ["a"], "val", 1)
    assert not path.exists() and read_feature_weights(path) is None
