"""What "predicts the same" means, for verify-compat and verify-stored alike: the notebook's
predictions (meta.json's labels and probabilities) against what the Ray image answered."""
from __future__ import annotations

import math

TOLERANCE = 1e-9


def _finite(values: list, side: str, what: str, row: int | None = None) -> str:
    bad = [v for v in values if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)]
    return f"{side} gave a {what} that is not a finite number ({bad[0]})" + (
        f" at probe row {row}" if row is not None else "") if bad else ""


def compare(expected: dict, served: dict) -> tuple[bool, str, float | None]:
    """Labels equal and of the same type (a regressor's numbers: within TOLERANCE) and probabilities within TOLERANCE
    (null on both sides for a model without predict_proba), every number finite; the reason names
    the first difference. A NaN or an infinity is never "within tolerance"."""
    want, got = expected["labels"], served.get("labels")
    if not isinstance(got, list) or len(got) != len(want):
        return False, (f"ray answered {len(got) if isinstance(got, list) else 'no'} labels for "
                       f"{len(want)} probe rows"), None
    diff = 0.0
    if any(isinstance(v, float) for v in want):  # a regressor: numbers, compared with the tolerance
        why = _finite(want, "the notebook", "prediction") or _finite(got, "ray", "prediction")
        if why:
            return False, why, None
        diff = max((abs(x - y) for x, y in zip(want, got)), default=0.0)
        if diff > TOLERANCE:
            return False, f"predictions differ by up to {diff:.3g} (> {TOLERANCE:g})", diff
    else:  # classes: equal and of the same JSON type (1 is not 1.0 nor True: another classes_ dtype)
        bad = [i for i, (a, b) in enumerate(zip(want, got)) if a != b]
        if bad:
            return False, f"labels differ at probe rows {bad[:5]} (notebook vs ray)", None
        kind = [i for i, (a, b) in enumerate(zip(want, got)) if type(a) is not type(b)]
        if kind:
            i = kind[0]
            return False, (f"labels differ in type at probe rows {kind[:5]}: the notebook gave "
                           f"{type(want[i]).__name__} {want[i]!r}, ray {type(got[i]).__name__} {got[i]!r}"), None
    a, b = expected.get("probabilities"), served.get("probabilities")
    if a is None or b is None:
        if a is None and b is None:
            return True, "", diff
        return False, f"probabilities from {'ray' if a is None else 'the notebook'} only", None
    if not isinstance(b, list) or len(a) != len(b):
        return False, (f"probabilities have a different shape: {len(a)} probe rows in the notebook, "
                       f"{len(b) if isinstance(b, list) else 'none'} from ray"), None
    for row, (x, y) in enumerate(zip(a, b)):
        if not isinstance(y, list) or len(x) != len(y):
            return False, (f"probabilities have a different shape: probe row {row} has {len(x)} classes in the "
                           f"notebook, {len(y) if isinstance(y, list) else 'none'} from ray"), None
        why = _finite(y, "ray", "probability", row) or _finite(x, "the notebook", "probability", row)
        if why:
            return False, why, None
    diff = max((abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)), default=0.0)
    if diff > TOLERANCE:
        return False, f"probabilities differ by up to {diff:.3g} (> {TOLERANCE:g})", diff
    return True, "", diff


class Models:
    """A report over models (``models``, each with ``ok``): it passes when it checked some and each passed."""
    models: list

    @property
    def ok(self) -> bool:
        return bool(self.models) and all(m.ok for m in self.models)
