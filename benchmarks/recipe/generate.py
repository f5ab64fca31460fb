"""Generate the recipe benchmark suite: six tasks like the paper's setting, on a CPU budget.

    python benchmarks/recipe/generate.py            # writes benchmarks/recipe/data/*/*.jsonl
    python benchmarks/recipe/generate.py --out DIR  # somewhere else (model.yaml expects data/)

Seed 20261123 (SEED below): the same files on every machine. Synthetic e-commerce text:
support tickets (topic, reply, order id), product reviews (sentiment, rating) and short
messages (spam). What the paper's setting has, scaled down for a tiny model on a CPU:

    task       type            taxonomy    train  eval  metric
    topic      classification  multiclass   2500   150  accuracy     high-resource (stage 1)
    sentiment  classification  binary        500   150  accuracy
    rating     classification  ordinal       150   150  macro_f1
    spam       classification  binary         25   150  accuracy
    reply      generation      -             250   100  rouge_l
    order-id   generation      -              50   100  exact_match

Two orders of magnitude between the largest and the smallest task (2500 / 25). Every label is
recoverable from the text (cue words among distractors), and the cue phrases of one label are
several, so a small task does not see all of them in its few examples. Eval sets are fixed
files, the same for every seed, so the seeds vary training only.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20261123
HERE = Path(__file__).parent

TOPICS = {
    "billing": ["charged twice", "wrong invoice", "card was billed", "refund the fee"],
    "delivery": ["parcel is late", "courier lost it", "tracking is stuck", "wrong address"],
    "technical": ["app crashes", "screen stays black", "cannot connect", "update failed"],
    "account": ["cannot log in", "password reset", "account locked", "change my email"],
    "returns": ["send it back", "return label", "exchange the size", "item is broken"],
    "feedback": ["great service", "suggest a feature", "love the shop", "nice packaging"],
}
REPLY = {
    "billing": "sorry about the billing error", "delivery": "sorry your parcel is late",
    "technical": "sorry the product is not working", "account": "we will unlock your account",
    "returns": "here is your return label", "feedback": "thank you for your feedback",
}
PRODUCTS = ["phone", "laptop", "kettle", "camera", "watch", "lamp"]
OPENERS = ["hi", "hello", "hey team", "good day", "dear shop", ""]
# Ratings 1..5: ordinal, each with several cue words; sentiment follows (1-2 neg, 4-5 pos).
RATING = {
    "1": ["awful", "useless", "a disaster"], "2": ["poor", "disappointing", "below par"],
    "3": ["okay", "average", "so-so"], "4": ["good", "solid", "pleasant"],
    "5": ["excellent", "perfect", "outstanding"],
}
SENTIMENT_OF = {"1": "negative", "2": "negative", "4": "positive", "5": "positive"}
SPAM = ["win a free", "click this link for a", "cheap pills and a", "you won a prize"]
HAM = ["can we meet about the", "I left my", "please bring the", "did you see the"]

SIZES = {  # task: (train, eval)
    "topic": (2500, 150), "sentiment": (500, 150), "rating": (150, 150), "spam": (25, 150),
    "reply": (250, 100), "order-id": (50, 100),
}


def ticket(rng: random.Random) -> dict:
    topic = rng.choice(list(TOPICS))
    order = f"{rng.choice('ABCDEFGH')}{rng.randint(100, 999)}"
    product = rng.choice(PRODUCTS)
    parts = [rng.choice(OPENERS), f"my {product} {rng.choice(TOPICS[topic])}",
             f"order {order}"]
    return {"text": ", ".join(p for p in parts if p), "topic": topic, "order": order}


def review(rng: random.Random, ratings: list[str]) -> dict:
    rating = rng.choice(ratings)
    text = f"the {rng.choice(PRODUCTS)} is {rng.choice(RATING[rating])}"
    return {"text": text, "rating": rating}


def message(rng: random.Random) -> dict:
    spam = rng.random() < 0.5
    text = f"{rng.choice(SPAM if spam else HAM)} {rng.choice(PRODUCTS)}"
    return {"text": text, "spam": "spam" if spam else "ham"}


def rows(task: str, rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        if task == "topic":
            t = ticket(rng)
            out.append((t["text"], t["topic"]))
        elif task == "reply":
            t = ticket(rng)
            out.append((t["text"], f"{REPLY[t['topic']]}, order {t['order']}"))
        elif task == "order-id":
            t = ticket(rng)
            out.append((t["text"], t["order"]))
        elif task == "sentiment":
            r = review(rng, list(SENTIMENT_OF))
            out.append((r["text"], SENTIMENT_OF[r["rating"]]))
        elif task == "rating":
            r = review(rng, list(RATING))
            out.append((r["text"], r["rating"]))
        else:
            m = message(rng)
            out.append((m["text"], m["spam"]))
    return out


def write(path: Path, examples: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for text, output in examples:
            handle.write(json.dumps({"input": text, "output": output}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args()
    for task, (train, evals) in SIZES.items():
        rng = random.Random(f"{SEED}:{task}")  # one stream per task: sizes change independently
        write(args.out / task / "train.jsonl", rows(task, rng, train))
        write(args.out / task / "eval.jsonl", rows(task, rng, evals))
    print(f"wrote {len(SIZES)} tasks to {args.out}")


if __name__ == "__main__":
    main()
