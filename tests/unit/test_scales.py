"""Scale definitions and scoring on a hand-made case (tests/data/survey/scales, worked by hand)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omicslake.errors import ConfigError
from omicslake.survey.scales import keyed, load_scale, load_scales, score

CASE = Path(__file__).resolve().parents[1] / "data" / "survey" / "scales"


def test_scores_as_worked_out_by_hand() -> None:
    spec = load_scale(CASE / "scale.yaml")
    x = keyed(pd.read_csv(CASE / "items.csv").to_numpy(dtype=float), spec)
    expected = pd.read_csv(CASE / "expected.csv")
    for part, col in (("total", "total"), ("ab", "ab")):
        s, answered = score(x, spec, spec.parts()[part])
        np.testing.assert_array_equal(s, expected[col].to_numpy(dtype=float))
        np.testing.assert_array_equal(answered, expected[f"{col}_answered"].to_numpy())


def test_mean_scoring_is_not_prorated() -> None:
    spec = load_scale(CASE / "scale.yaml")
    from dataclasses import replace

    mean_spec = replace(spec, score="mean")
    x = keyed(np.array([[1.0, np.nan, 3.0, 2.0]]), mean_spec)  # keyed c = 0 -> mean of 1, 0, 2
    assert score(x, mean_spec, mean_spec.items)[0][0] == pytest.approx(1.0)


def test_bad_scale_definitions_name_the_file(tmp_path: Path) -> None:
    good = (CASE / "scale.yaml").read_text()
    cases = {
        "reverse: [c]": ("reverse: [z]", r"reverse names \['z'\], which are not items"),
        "ab: [a, b]": ("ab: [a, q]", r"subscales.ab names \['q'\]"),
        "range: [0, 3]": ("range: [3, 0]", "range must be"),
        "score: sum": ("score: median", "score"),
        "max_missing_share: 0.25": ("max_missing_share: 0.25\ncolour: red", "unknown key 'colour'"),
    }
    for old, (new, msg) in cases.items():
        p = tmp_path / "bad.yaml"
        p.write_text(good.replace(old, new))
        with pytest.raises(ConfigError, match=msg) as e:
            load_scale(p)
        assert "bad.yaml" in str(e.value)


def test_shipped_scales_load() -> None:
    from omicslake.resources import resource_dir

    names = [s.name for s in load_scales(resource_dir("conf") / "scales")]
    assert names == ["anxiety", "mood"]


def test_reverse_keying_uses_both_ends_of_the_range() -> None:
    from dataclasses import replace

    spec = replace(load_scale(CASE / "scale.yaml"), range=(1.0, 4.0))
    x = keyed(np.array([[1.0, 2.0, 4.0, 3.0]]), spec)  # c = 4 keyed as 1 + 4 - 4 = 1 -> 1 + 2 + 1 + 3
    assert score(x, spec, spec.items)[0][0] == 7.0
