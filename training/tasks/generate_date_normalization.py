"""Write the shipped ``date_normalization`` task: rewrite a date given in a random style as ISO 8601.

The answer is checkable by exact match, a 135M instruct model mostly gets the format wrong before
fine-tuning, and a few minutes of LoRA on CPU teach it. Deterministic: rerunning this script
rewrites byte-identical files.

    python -m training.tasks.generate_date_normalization
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "date_normalization"
SYSTEM = "You convert dates to ISO 8601. Reply with the date only, as YYYY-MM-DD."
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

STYLES = [
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    lambda d: f"the {d.day}{_suffix(d.day)} of {MONTHS[d.month - 1]}, {d.year}",
    lambda d: f"{d.strftime('%A')}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
]
ASKS = [
    "Convert this date to ISO 8601: {date}",
    "What is {date} in YYYY-MM-DD format?",
    "Normalize the date: {date}",
    "Rewrite as an ISO date: {date}",
]


def _suffix(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def make_example(rng: random.Random, as_chat: bool) -> dict:
    day = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 100))
    question = rng.choice(ASKS).format(date=rng.choice(STYLES)(day))
    answer = day.isoformat()
    if as_chat:
        return {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        }
    return {"prompt": f"{SYSTEM}\n{question}", "completion": answer}


def write(path: Path, examples: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")


def main() -> None:
    rng = random.Random(20261122)
    # Both line formats appear in the training data; validation is chat-only so evaluation
    # prompts are the same shape the served model sees.
    train = [make_example(rng, as_chat=rng.random() < 0.75) for _ in range(480)]
    validation = [make_example(rng, as_chat=True) for _ in range(120)]
    seen = {json.dumps(e["messages"][1:2] if "messages" in e else e["prompt"]) for e in train}
    validation = [e for e in validation if json.dumps(e["messages"][1:2]) not in seen]
    write(OUT / "train.jsonl", train)
    write(OUT / "validation.jsonl", validation)
    print(f"wrote {len(train)} train and {len(validation)} validation examples to {OUT}")


if __name__ == "__main__":
    main()
