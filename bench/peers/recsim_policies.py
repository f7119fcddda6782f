"""RecSim 0.2.4's own environments under the calibration policies, for the ports' check.

Run with the RecSim virtual environment's interpreter (see ``bench/peers/README.md``)::

    /opt/peers/recsim/bin/python bench/peers/recsim_policies.py --episodes 2000

Prints, per environment and policy, mean episode length (steps) and mean return with a
95% normal-approximation half-width, as one JSON line each. Compare with
``loe-gym calibrate --env loe_gym/InterestEvolution-v0`` (``episode_length``, ``total_watch``).

Policies, on RecSim's README setting (10 candidates resampled every step, slate of 2):
``random`` (2 distinct candidates), ``max_interest`` (the 2 highest ``user · doc``, the
observable max-click heuristic), ``max_quality`` (the 2 highest hidden document qualities,
read from RecSim's candidate set).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings


def _claim_stdout() -> object:
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library banners go to stderr
    return json_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = _claim_stdout()
    warnings.filterwarnings("ignore")
    import numpy as np
    from recsim.environments import interest_evolution, long_term_satisfaction

    config = {"num_candidates": 10, "slate_size": 2, "resample_documents": True, "seed": args.seed}
    rng = np.random.default_rng(args.seed)
    builders = {
        "interest_evolution": (interest_evolution, ("random", "max_interest", "max_quality")),
        "long_term_satisfaction": (long_term_satisfaction, ("random",)),
    }
    for env_name, (module, policies) in builders.items():
        for policy in policies:
            env = module.create_environment(dict(config))
            env.seed(args.seed)
            lengths, returns = [], []
            for _ in range(args.episodes):
                obs = env.reset()
                done, steps, total = False, 0, 0.0
                while not done:
                    docs = list(obs["doc"].values())
                    if policy == "random":
                        slate = rng.choice(len(docs), 2, replace=False)
                    elif policy == "max_interest":
                        scores = np.array([np.dot(obs["user"], d) for d in docs])
                        slate = np.argsort(-scores)[:2]
                    else:
                        candidates = env.environment.candidate_set.get_all_documents()
                        slate = np.argsort(-np.array([d.quality for d in candidates]))[:2]
                    obs, reward, done, _ = env.step(list(slate))
                    steps += 1
                    total += reward
                lengths.append(steps)
                returns.append(total)
            record = {"env": env_name, "policy": policy, "episodes": args.episodes}
            for name, values in (("episode_length", lengths), ("return", returns)):
                array = np.asarray(values, float)
                half = 1.96 * array.std(ddof=1) / math.sqrt(array.size)
                record[name] = {"mean": float(array.mean()), "ci95_half_width": float(half)}
            print(json.dumps(record), file=out, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
