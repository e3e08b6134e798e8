"""Private model classes. A model pickled from here names ``sunat_models.ThresholdClassifier``:
the class itself is not in the pickle, so every image that unpickles it must have this package."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

__version__ = "1.0.0"


class ThresholdClassifier(ClassifierMixin, BaseEstimator):
    """A binary classifier whose decision threshold is tuned instead of fixed at 0.5."""

    def __init__(self, estimator=None, threshold: float = 0.5):
        self.estimator = estimator
        self.threshold = threshold

    def fit(self, X, y):
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        return np.where(self.predict_proba(X)[:, 1] >= self.threshold, self.classes_[1], self.classes_[0])
