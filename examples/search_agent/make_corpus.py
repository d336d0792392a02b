"""Write the recipe's offline knowledge: a fictional world of people, towns, rivers,
mountains and inventions (corpus.jsonl: one encyclopedia article per entity) and multi-hop
paths through it (paths.jsonl: the facts a riddle chains, and its answer).

    python examples/search_agent/make_corpus.py      # rewrites both files (deterministic)

Everything is generated from a fixed seed, so the files never change unless this script does;
the world is made up, so a model cannot answer from memory and has to search.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ren",
    "ta",
    "vor",
    "el",
    "sa",
    "dun",
    "ri",
    "bel",
    "mar",
    "os",
    "tin",
    "ga",
    "her",
    "ul",
    "ne",
    "qua",
    "zel",
    "fa",
    "dor",
    "il",
    "pe",
    "ston",
    "wy",
]
TRADES = ["clockmaker", "cartographer", "glassblower", "astronomer", "weaver", "engineer"]
THINGS = ["lens", "loom", "compass", "pump", "lantern", "press", "telescope", "kiln"]


def name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def world(rng: random.Random) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    taken: set[str] = set()

    def unique(parts: int) -> str:
        while (candidate := name(rng, parts)) in taken:
            pass
        taken.add(candidate)
        return candidate

    mountains = [
        {"kind": "mountain", "name": f"Mount {unique(2)}", "height": rng.randint(1200, 6800)}
        for _ in range(60)
    ]
    rivers = [
        {
            "kind": "river",
            "name": f"{unique(2)} River",
            "source": rng.choice(mountains)["name"],
            "length": rng.randint(40, 900),
        }
        for _ in range(90)
    ]
    towns = [
        {
            "kind": "town",
            "name": unique(3),
            "river": rng.choice(rivers)["name"],
            "founded": rng.randint(900, 1800),
        }
        for _ in range(300)
    ]
    people = [
        {
            "kind": "person",
            "name": f"{unique(3)} {unique(3)}",
            "born_in": rng.choice(towns)["name"],
            "trade": rng.choice(TRADES),
            "born": rng.randint(1700, 1950),
        }
        for _ in range(600)
    ]
    inventions = [
        {
            "kind": "invention",
            "name": f"the {unique(2)} {rng.choice(THINGS)}",
            "inventor": rng.choice(people)["name"],
            "year": rng.randint(1750, 2000),
        }
        for _ in range(300)
    ]
    entities = [*mountains, *rivers, *towns, *people, *inventions]
    docs = [
        {"id": f"e{i:04d}", "title": e["name"], "text": article(e, rng)}
        for i, e in enumerate(entities)
    ]
    by_name = {e["name"]: e for e in entities}
    paths = []
    for invention in inventions:
        person = by_name[invention["inventor"]]
        town = by_name[person["born_in"]]
        river = by_name[town["river"]]
        paths.append(
            {
                "start": invention["name"],
                "hops": [
                    f"{invention['name']} was invented by {person['name']}",
                    f"{person['name']} was born in {town['name']}",
                    f"{town['name']} lies on the {river['name']}",
                    f"the {river['name']} rises on {river['source']}",
                ],
                "answer": river["source"],
            }
        )
    return docs, paths


def article(entity: dict[str, object], rng: random.Random) -> str:
    filler = " ".join(
        rng.sample(
            [
                "Local archives hold several letters about it.",
                "Travellers of the period mention it often.",
                f"It appears in the regional survey of {rng.randint(1820, 1910)}.",
                "Little else is recorded about it.",
                f"A museum catalogue lists {rng.randint(2, 40)} objects connected with it.",
                "Its name is spelled in several ways in older sources.",
                f"The county gazette wrote about it in {rng.randint(1850, 1990)}.",
                "Historians disagree about some of the dates.",
            ],
            k=3,
        )
    )
    kind = entity["kind"]
    if kind == "mountain":
        text = f"{entity['name']} is a mountain {entity['height']} metres high."
    elif kind == "river":
        text = f"The {entity['name']} rises on {entity['source']} and runs {entity['length']} km."
    elif kind == "town":
        text = (
            f"{entity['name']} is a town on the {entity['river']}, founded in {entity['founded']}."
        )
    elif kind == "person":
        text = (
            f"{entity['name']} was a {entity['trade']} born in {entity['born_in']}"
            f" in {entity['born']}."
        )
    else:
        text = (
            f"{str(entity['name']).capitalize()} was invented by {entity['inventor']}"
            f" in {entity['year']}."
        )
    return f"{text} {filler}"


def main() -> None:
    docs, paths = world(random.Random(20261202))
    with (HERE / "corpus.jsonl").open("w") as out:
        for doc in docs:
            out.write(json.dumps(doc) + "\n")
    with (HERE / "paths.jsonl").open("w") as out:
        for path in paths:
            out.write(json.dumps(path) + "\n")
    print(f"{len(docs)} articles, {len(paths)} paths")


if __name__ == "__main__":
    main()
