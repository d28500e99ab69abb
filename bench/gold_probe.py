"""Can a player get a gold answer, or tell gold checks from ordinary tasks? Played, not argued.

Honest and cheating players play the demo campaign (the MNI slices, with the nilearn tissue maps
as gold standards on half of them) against the real server on the embedded default (daphne,
SQLite, in-process Celery, the exported LiteMedSAM), over HTTP and the game WebSocket, as the app
does: start a round, fetch each task's initial mask, ask MedSAM for a suggestion on the initial
mask's own box (over the socket), submit, and listen for ``score.settled`` and ``checks.reported``.

- *honest* players trace the true structure (the tissue map, a few pixels off, as a hand would);
- *cheating* players hand back whatever the server handed them: the initial mask unchanged, or
  MedSAM's suggestion on the middle of the image when there is none.

The probe knows which tasks are golds by reading the database (it is a test harness), but every
signal below is computed only from what the clients received, per task, and reported as ROC AUC
of gold against ordinary tasks, folded so 0.5 means "no better than chance" and 1.0 "always
tells them apart": hand-out frequency; initial mask present (200 or 204), its source, area, RLE
length, latency, and its Dice with MedSAM's suggestion on its own box; provisional points; submit
latency; settled points (honest, cheating) and quality; share settled and time to settle; and
two ways to read golds from ``check_accuracy`` with per-task qualities (the best-fitting subset
of a round, and distance to the reported accuracy). ``gold_masks_leaked`` counts every mask a
client received that is exactly a task's gold. ``max_auc_null_p95`` is what ``max_auc`` reaches
with the gold labels shuffled (95th percentile): the part of ``max_auc`` that is noise. It depends
only on how many tasks were seen: about 0.61 for the full run's 112 + 112 (every MNI slice the demo
deems fair, half of them gold), so ``max_auc`` <= 0.60 there is at the resolution the demo data
allows; the quick run's 12 + 12 tasks make it a smoke test whose AUCs are mostly noise.

    .venv/bin/python bench/gold_probe.py            # 56 + 56 slices, 12 players, up to 150 s of play
    .venv/bin/python bench/gold_probe.py --quick    # 6 + 6 slices, 6 players, 15 s: a smoke test

Needs the exported model in var/models/litemedsam (``manage.py export_medsam``). The last line of
output is the JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotations.metrics import dice, dilate  # noqa: E402
from bench._aio import HttpClient, WebSocket  # noqa: E402
from bench._server import MODEL_DIR, Server  # noqa: E402
from inference.engine import rle  # noqa: E402

SETUP = """
import json
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from accounts.models import User
from annotations.demo import GOLD_THRESHOLD, MNI_DATASET, demo_load
from annotations.io import ReadOptions
from annotations.io.nifti import volume_slices
from annotations.io.samples import mni_path
from annotations.models import Dataset, Task
from gamification import services
from inference.engine import rle

demo_load(mni_slices={golds}, mni_unlabelled={unlabelled})
dataset = Dataset.objects.get(name=MNI_DATASET)
campaign = services.campaign_create(
    owner=dataset.owner, dataset=dataset, name="gold probe", label_classes=list(dataset.label_classes.all()),
    round_size={round_size}, annotations_per_image={per_image}, round_seconds=900,
)
store = import_module(settings.SESSION_ENGINE).SessionStore
User.objects.bulk_create(User(username=f"prober{{i}}", pseudonym=f"probe-player-{{i:04d}}") for i in range({players}))
tokens = []
for user in User.objects.filter(username__startswith="prober").order_by("pk"):
    session = store()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    tokens.append(session.session_key)
# What honest players trace: the tissue map of every slice (the harness's truth; the server keeps it
# as a gold standard on half of the slices only).
maps = {{}}
for label, kind in (("white matter", "wm"), ("grey matter", "gm")):
    planes, _ = volume_slices(mni_path(kind).read_bytes(), mni_path(kind).name, ReadOptions(nifti_axis="axial"))
    maps[label] = {{info.index: plane >= GOLD_THRESHOLD for info, plane in planes}}
truth = {{
    str(task.pk): rle.encode(maps[task.label_class.name][task.image.slice_index])
    for task in Task.objects.filter(image__dataset=dataset).select_related("image", "label_class")
}}
print(json.dumps({{"campaign": campaign.pk, "tokens": tokens, "truth": truth}}))
"""

GOLDS = """
import json
from annotations.models import GoldStandard
print(json.dumps({str(g.task_id): g.mask for g in GoldStandard.objects.all()}))
"""

CLAIMED_MS = 1500  # what a player reports per task: the least a person needs (its pace is at least 1 s)
SUGGEST_SHARE = 0.6  # initial masks checked against MedSAM on their own box


@dataclass
class Seen:
    """Everything the clients received, by task id (and player where it matters)."""

    handed: dict = field(default_factory=lambda: defaultdict(int))
    initial: dict = field(default_factory=lambda: defaultdict(list))  # (status, source, rle_len, area, ms)
    received_masks: list = field(default_factory=list)  # (task, rle) of every mask a client got
    agreement: dict = field(default_factory=lambda: defaultdict(list))  # Dice(initial mask, suggestion on its box)
    provisional: dict = field(default_factory=lambda: defaultdict(list))
    submit_ms: dict = field(default_factory=lambda: defaultdict(list))
    submitted: dict = field(default_factory=dict)  # (player, task) -> monotonic time of the 201
    settled: dict = field(default_factory=dict)  # (player, task) -> (points, quality, seconds to settle)
    rounds: list = field(default_factory=list)  # (player, kind, round id)
    round_details: list = field(default_factory=list)  # (player, kind, REST round body)
    reports: list = field(default_factory=list)  # checks.reported events
    errors: dict = field(default_factory=lambda: defaultdict(int))


def bbox(mask: np.ndarray) -> list[float] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def traced(truth: np.ndarray, rng: random.Random) -> np.ndarray:
    """A person's tracing of ``truth``: a pixel or two wide or narrow, shifted a little, wobbly."""
    grow = rng.choice([-1, 0, 0, 1])
    mask = dilate(truth, grow) if grow >= 0 else ~dilate(~truth, -grow)
    mask = np.roll(mask, (rng.randint(-1, 1), rng.randint(-1, 1)), axis=(0, 1))
    edge = dilate(mask, 1) & ~(~dilate(~mask, 1))
    flips = np.random.default_rng(rng.getrandbits(32)).random(mask.shape) < 0.2
    return mask ^ (edge & flips)


async def player(
    port: int, token: str, kind: str, campaign: int, truth: dict, deadline: float, pace: float, seen: Seen, seed: int
) -> None:
    try:
        await _play(port, token, kind, campaign, truth, deadline, pace, seen, seed)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        seen.errors[f"connection {type(exc).__name__}"] += 1


async def _play(port, token, kind, campaign, truth, deadline, pace, seen: Seen, seed: int) -> None:
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(0, 3))
    headers = {"X-Session-Token": token}
    http = HttpClient("127.0.0.1", port, headers)
    socket = await WebSocket.open("127.0.0.1", port, "/ws/v1/play", {**headers, "Origin": f"http://127.0.0.1:{port}"})
    answers: dict[str, asyncio.Future] = {}

    async def listen():
        while True:
            try:
                message = await socket.receive()
            except (ConnectionError, asyncio.IncompleteReadError):
                return
            if message is None:
                return
            kind_ = message.get("type")
            if message.get("id") in answers:
                answers.pop(message["id"]).set_result(message)
            elif kind_ == "score.settled":
                key = (seed, message["task"])
                waited = time.monotonic() - seen.submitted.get(key, time.monotonic())
                seen.settled[key] = (message["points"], message["quality"], waited)
            elif kind_ == "checks.reported":
                seen.reports.append({**message, "player": seed})

    async def suggest(task_id: str, box: list[float]) -> dict | None:
        request_id = uuid.uuid4().hex
        answers[request_id] = asyncio.get_running_loop().create_future()
        await socket.send({"type": "suggest", "id": request_id, "task": task_id, "box": box})
        try:
            answer = await asyncio.wait_for(answers[request_id], 30)
        except TimeoutError:
            answers.pop(request_id, None)
            seen.errors["suggest timeout"] += 1
            return None
        if answer.get("type") != "suggestion":
            seen.errors[f"suggest {answer.get('error', {}).get('code')}"] += 1
            return None
        seen.received_masks.append((task_id, answer["rle"]))
        return answer

    listener = asyncio.create_task(listen())
    await http.request("POST", f"/api/v1/campaigns/{campaign}/join", {})
    while time.monotonic() < deadline:
        status, game_round, _ = await http.request("POST", f"/api/v1/campaigns/{campaign}/rounds")
        if status != 201:
            if status != 409:
                seen.errors[f"round {status}"] += 1
            break
        seen.rounds.append((seed, kind, game_round["id"]))
        for task in game_round["tasks"]:
            seen.handed[task["id"]] += 1
        for task in game_round["tasks"]:
            started = time.monotonic()
            task_id, shape = task["id"], (task["image"]["height"], task["image"]["width"])
            shown = None
            if task["initial_mask_url"]:
                sent = time.perf_counter()
                status, body, _ = await http.request("GET", f"/api/v1/tasks/{task_id}/initial-mask")
                ms = (time.perf_counter() - sent) * 1000
                if status == 200:
                    seen.received_masks.append((task_id, body["rle"]))
                    seen.initial[task_id].append((200, body["source"], len(body["rle"]["counts"]), body["area"], ms))
                    shown = rle.decode(body["rle"])
                elif status == 204:
                    seen.initial[task_id].append((204, None, None, None, ms))
                else:
                    seen.errors[f"initial-mask {status}"] += 1
            box = None if shown is None else bbox(shown)
            if box is not None and rng.random() < SUGGEST_SHARE:
                answer = await suggest(task_id, box)
                if answer is not None:
                    seen.agreement[task_id].append(dice(shown, rle.decode(answer["rle"])))
            use = "none"
            if kind == "honest":
                mask = traced(rle.decode(truth[task_id]), rng)
            elif shown is not None:
                mask = shown  # hand back what the server handed out
            else:
                h, w = shape
                middle = [w * 0.25, h * 0.25, w * 0.75, h * 0.75]
                answer = await suggest(task_id, middle) if task["suggest_url"] else None
                mask = rle.decode(answer["rle"]) if answer else np.zeros(shape, bool)
                use = "accepted" if answer else "none"
            await asyncio.sleep(max(0.0, pace - (time.monotonic() - started)))
            body = {"rle": rle.encode(mask), "time_spent_ms": CLAIMED_MS, "suggestion_use": use}
            sent = time.perf_counter()
            status, answer, _ = await http.request(
                "POST",
                f"/api/v1/rounds/{game_round['id']}/tasks/{task_id}/submit",
                body,
                {"Idempotency-Key": uuid.uuid4().hex},
            )
            if status != 201:
                seen.errors[f"submit {status}"] += 1
                continue
            seen.submit_ms[task_id].append((time.perf_counter() - sent) * 1000)
            seen.submitted[(seed, task_id)] = time.monotonic()
            seen.provisional[task_id].append(answer["points"])
    await asyncio.sleep(4)  # the last settlements
    for who, _, round_id in [r for r in seen.rounds if r[0] == seed]:
        status, body, _ = await http.request("GET", f"/api/v1/rounds/{round_id}")
        if status == 200:
            seen.round_details.append((who, kind, body))
    listener.cancel()
    await socket.close()
    await http.close()


def auc(gold: list[float], ordinary: list[float]) -> float:
    """P(a gold task's value > an ordinary one's), ties counting half (Mann-Whitney)."""
    values = np.concatenate([gold, ordinary])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n1, n2 = len(gold), len(ordinary)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n2))


def separability(value: float) -> float:
    return max(value, 1 - value)


def signals(seen: Seen) -> dict[str, dict[str, float]]:
    """Per signal: task id -> the task's value, from what the clients received only."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for task, n in seen.handed.items():
        out["handout_count"][task] = n
    for task, fetches in seen.initial.items():
        out["initial_mask_present"][task] = np.mean([f[0] == 200 for f in fetches])
        out["initial_mask_ms"][task] = np.mean([f[4] for f in fetches])
        shown = [f for f in fetches if f[0] == 200]
        if shown:
            out["initial_mask_consensus_share"][task] = np.mean([f[1] == "consensus" for f in shown])
            out["initial_mask_rle_length"][task] = np.mean([f[2] for f in shown])
            out["initial_mask_area"][task] = np.mean([f[3] for f in shown])
    for task, values in seen.agreement.items():
        out["initial_mask_vs_suggestion_dice"][task] = np.mean(values)
    for task, values in seen.provisional.items():
        out["provisional_points"][task] = np.mean(values)
    for task, values in seen.submit_ms.items():
        out["submit_ms"][task] = np.mean(values)
    kinds = {who: kind for who, kind, _ in seen.rounds}
    by_task = defaultdict(lambda: defaultdict(list))
    for (who, task), (points, quality, waited) in seen.settled.items():
        by_task[task][f"settled_points_{kinds[who]}"].append(points)
        by_task[task]["settled_quality"].append(quality)
        by_task[task]["seconds_to_settle"].append(waited)
    for task, values in by_task.items():
        for name, series in values.items():
            out[name][task] = np.mean(series)
    submitted = defaultdict(int)
    for _, task in seen.submitted:
        submitted[task] += 1
    for task, n in submitted.items():
        out["settled_share"][task] = sum(1 for (_, t) in seen.settled if t == task) / n
    # check_accuracy read against per-task settled qualities, as the old per-round figure allowed.
    subset, distance = defaultdict(list), defaultdict(list)
    for who, _, body in seen.round_details:
        accuracy = body.get("check_accuracy")
        if accuracy is None:
            continue
        qualities = {t["id"]: seen.settled[(who, t["id"])][1] for t in body["tasks"] if (who, t["id"]) in seen.settled}
        for task, q in qualities.items():
            distance[task].append(-abs(q - accuracy))
        tasks = list(qualities)
        best, chosen = None, set()
        for k in range(1, len(tasks) + 1):
            for combo in itertools.combinations(tasks, k):
                gap = abs(np.mean([qualities[t] for t in combo]) - accuracy)
                if best is None or gap < best:
                    best, chosen = gap, set(combo)
        for task in tasks:
            subset[task].append(float(task in chosen))
    for task, values in subset.items():
        out["check_accuracy_subset"][task] = np.mean(values)
    for task, values in distance.items():
        out["check_accuracy_distance"][task] = np.mean(values)
    return out


def separabilities(values: dict[str, dict[str, float]], golds: set, min_each: int = 4) -> dict[str, float]:
    result = {}
    for name, by_task in values.items():
        gold = [v for t, v in by_task.items() if t in golds]
        ordinary = [v for t, v in by_task.items() if t not in golds]
        if len(gold) >= min_each and len(ordinary) >= min_each:
            result[name] = round(separability(auc(gold, ordinary)), 3)
    return result


def null_p95(values: dict[str, dict[str, float]], golds: set, rounds: int = 200, seed: int = 0) -> float:
    """The 95th percentile of max_auc with the gold labels shuffled over the tasks seen."""
    rng = random.Random(seed)
    tasks = sorted({t for by_task in values.values() for t in by_task})
    n_gold = sum(t in golds for t in tasks)
    maxima = []
    for _ in range(rounds):
        shuffled = set(rng.sample(tasks, n_gold))
        aucs = separabilities(values, shuffled)
        maxima.append(max(aucs.values(), default=0.5))
    return round(float(np.percentile(maxima, 95)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 + 6 slices, 6 players, 15 s of play")
    parser.add_argument("--players", type=int)
    parser.add_argument("--seconds", type=float, help="of play (players also stop when nothing is left)")
    parser.add_argument("--pace", type=float, help="seconds a player spends on a task (at least 1)")
    parser.add_argument("--slices", type=int, help="MNI slices with golds, and as many without")
    parser.add_argument("--cheat-share", type=float, default=0.5, help="share of players who cheat")
    args = parser.parse_args()
    slices = args.slices or (6 if args.quick else 56)
    players = args.players or (6 if args.quick else 12)
    seconds = args.seconds or (15 if args.quick else 150)
    pace = max(args.pace or (1.0 if args.quick else 2.0), 1.0)  # the embedded default fuses in each request
    if not (MODEL_DIR / "manifest.json").exists():
        sys.exit(f"no exported model in {MODEL_DIR}: run `.venv/bin/python manage.py export_medsam` first")

    began = time.monotonic()
    server = Server(extra_env={"CROWDSEG_ROUND_RATE": "100000/hour", "CROWDSEG_SUBMIT_RATE": "100000/min",
                               "CROWDSEG_SUGGEST_RATE": "100000/min"})  # fmt: skip
    try:
        print(f"setting up: demo data ({slices} + {slices} MNI slices), {players} players ...", flush=True)
        server.manage("migrate", "--verbosity", "0")
        setup = json.loads(
            server.manage(
                "shell",
                stdin=SETUP.format(golds=slices, unlabelled=slices, round_size=8, per_image=3, players=players),
            ).splitlines()[-1]
        )
        server.manage("embed_images", "--dataset", "MNI ICBM152 brain (demo)", "--verbosity", "0")
        server.start()
        print(f"playing: {players} players for up to {seconds:.0f} s ...", flush=True)
        seen = Seen()
        kinds = ["cheat" if i < round(players * args.cheat_share) else "honest" for i in range(players)]
        random.Random(1).shuffle(kinds)
        deadline = time.monotonic() + seconds

        campaign = setup["campaign"]

        async def play():
            await asyncio.gather(
                *(
                    player(server.port, token, kinds[i], campaign, setup["truth"], deadline, pace, seen, seed=i)
                    for i, token in enumerate(setup["tokens"])
                )
            )

        asyncio.run(play())
        gold_masks = json.loads(server.manage("shell", stdin=GOLDS).splitlines()[-1])
    finally:
        server.stop()

    golds = {t for t in gold_masks if t in setup["truth"]}  # the MNI campaign's gold tasks
    gold_arrays = {t: rle.decode(m) for t, m in gold_masks.items()}
    leaked = sum(
        1 for t, m in seen.received_masks if t in gold_arrays and np.array_equal(rle.decode(m), gold_arrays[t])
    )
    values = signals(seen)
    aucs = separabilities(values, golds)
    worst = max(aucs, key=aucs.get) if aucs else None
    round_tasks = defaultdict(list)
    for _, _, body in seen.round_details:
        round_tasks[body["id"]] = [t["id"] for t in body["tasks"]]
    all_gold = sum(1 for tasks in round_tasks.values() if tasks and all(t in golds for t in tasks))
    kinds_of = {who: kind for who, kind, _ in seen.rounds}
    settled_by = defaultdict(list)
    for (who, task), (points, _, _) in seen.settled.items():
        settled_by[(kinds_of[who], task in golds)].append(points)
    handed = sum(seen.handed.values())
    summary = {
        "gold_masks_leaked": leaked,
        "max_auc": aucs.get(worst, 0.5) if worst else None,
        "max_auc_signal": worst,
        "max_auc_null_p95": null_p95(values, golds),
        "auc": dict(sorted(aucs.items(), key=lambda kv: -kv[1])),
        "all_gold_rounds": all_gold,
        "cheater_full_marks_on_golds": sum(p >= 1000 for p in settled_by[("cheat", True)]),
        "mean_points": {
            f"{kind}_{'gold' if is_gold else 'ordinary'}": round(float(np.mean(points)), 1)
            for (kind, is_gold), points in sorted(settled_by.items())
        },
        "gold_share": {
            "tasks": round(len(golds) / max(len(setup["truth"]), 1), 3),
            "handed_out": round(sum(n for t, n in seen.handed.items() if t in golds) / max(handed, 1), 3),
        },
        "players": players,
        "cheaters": kinds.count("cheat"),
        "tasks_seen": {"gold": len(golds & set(seen.handed)), "ordinary": len(set(seen.handed) - golds)},
        "rounds": len(seen.rounds),
        "submissions": len(seen.submitted),
        "settled": len(seen.settled),
        "masks_received": len(seen.received_masks),
        "check_reports": len(seen.reports),
        "errors": dict(seen.errors),
        "seconds": round(time.monotonic() - began, 1),
    }
    print(f"gold_masks_leaked: {leaked}")
    print(f"max_auc: {summary['max_auc']} ({worst}; shuffled labels reach {summary['max_auc_null_p95']} at p95)")
    for name, value in summary["auc"].items():
        print(f"  {name:<34} {value:.3f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
