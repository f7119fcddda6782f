"""A four-feature logistic regression for clicks: how far simple history features go.

    python bench/click_feature_baseline.py --logs logs/engagement --users 1500

For each row after a user's first: the smoothed click rate of the user on the item's
topic so far (as a logit), how many of the last five shown items had that topic, and the
item's public CTR and completion estimates. A Newton-fitted logistic regression on these,
scored in-sample (4 weights: no overfitting to speak of), gives the click AUC that the
predictor should at least match; the Bayes AUC of the log's true probabilities is printed
beside it.
"""

from __future__ import annotations

import argparse

import numpy as np

from loe_gym.logs import read_catalog
from loe_gym.predictor.metrics import auc
from loe_gym.predictor.sequences import load_sequences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", required=True)
    parser.add_argument("--users", type=int, default=1500, help="first N users of the log")
    args = parser.parse_args()
    catalog = read_catalog(args.logs)
    if catalog is None:
        raise SystemExit(f"error: {args.logs} has no catalog")
    topic = catalog.column("topic").to_numpy()
    ctr = catalog.column("ctr_estimate").to_numpy()
    completion = catalog.column("completion_estimate").to_numpy()
    sequences, _ = load_sequences(args.logs, num_items=len(topic))
    features, labels, truth = [], [], []
    for user in range(min(args.users, sequences.num_users)):
        start, end = sequences.offsets[user], sequences.offsets[user + 1]
        items = sequences.item_id[start:end]
        clicked = sequences.clicked[start:end].astype(float)
        topics = topic[items]
        shown, clicks = np.zeros(topic.max() + 1), np.zeros(topic.max() + 1)
        for i, t in enumerate(topics):
            if i > 0:
                rate = (clicks[t] + 1) / (shown[t] + 2)
                recent = int(np.count_nonzero(topics[max(0, i - 5) : i] == t))
                features.append(
                    [np.log(rate / (1 - rate)), recent, ctr[items[i]], completion[items[i]]]
                )
                labels.append(clicked[i])
                truth.append(sequences.true_click_probability[start + i])
            shown[t] += 1
            clicks[t] += clicked[i]
    x = np.c_[np.ones(len(features)), np.asarray(features)]
    y = np.asarray(labels)
    weights = np.zeros(x.shape[1])
    for _ in range(25):  # Newton's method on the log loss
        p = 1 / (1 + np.exp(-(x @ weights)))
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(x.shape[1])
        weights -= np.linalg.solve(hessian, x.T @ (p - y))
    print(
        f"rows {y.size}: logistic regression click AUC {auc(y, x @ weights):.4f}, "
        f"Bayes click AUC {auc(y, np.asarray(truth)):.4f}"
    )


if __name__ == "__main__":
    main()
