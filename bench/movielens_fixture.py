"""Write a synthetic log in MovieLens 100k's published format (``u.data``, ``u.item``).

    python bench/movielens_fixture.py --output fixtures/ml-100k --users 400

No data is downloaded: users and movies are drawn from a small generative model, so the
files test the importer and the real-log validation (``bench/real_log_validation.sh``) at
any size. Users arrive on days 0–60 of a 120-day window; a session rates 2–8 movies, each
with stars from the user's taste for its genre and the movie's quality; after a session a
user leaves for good with probability 0.25, else returns after a Geometric(0.2) gap in days.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

GENRES = 19
START = 880_000_000  # 1997-11-20, inside MovieLens 100k's window


def write(folder: Path, users: int, movies: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    genre = rng.integers(0, GENRES, movies)
    quality = rng.normal(0.0, 1.0, movies)
    lines = []
    for user in range(1, users + 1):
        taste = rng.normal(0.0, 1.0, GENRES)
        day = int(rng.integers(0, 61))
        while day < 120:
            for step in range(int(rng.integers(2, 9))):
                movie = int(rng.integers(movies))
                score = 3.0 + 0.8 * taste[genre[movie]] + 0.6 * quality[movie] + rng.normal()
                stars = int(np.clip(round(score), 1, 5))
                time = START + day * 86_400 + 72_000 + 90 * step
                lines.append(f"{user}\t{movie + 1}\t{stars}\t{time}\n")
            if rng.random() < 0.25:
                break
            day += int(rng.geometric(0.2))
    (folder / "u.data").write_text("".join(lines))
    rows = []
    for movie in range(movies):
        year = 1930 + int(rng.integers(0, 68))
        flags = ["1" if g == genre[movie] else "0" for g in range(GENRES)]
        title = f"Movie {movie + 1} ({year})"
        rows.append(
            f"{movie + 1}|{title}|01-Jan-{year}||http://us.imdb.com/M/{movie + 1}|"
            + "|".join(flags)
            + "\n"
        )
    (folder / "u.item").write_bytes("".join(rows).encode("latin-1"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--movies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.output, args.users, args.movies, args.seed)
    print(f"wrote {args.output / 'u.data'} and {args.output / 'u.item'}")


if __name__ == "__main__":
    main()
