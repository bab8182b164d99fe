"""How the guide and the app's tabs put the factory's results in words: a dataset's summary and issues, the
task's metric name, the training options the resolver chose, training progress, the exports table."""

from __future__ import annotations

from factory.tasks import DEFAULT_TASK, TASKS, task_of


def describe_dataset(s: dict) -> str:
    task = task_of(s)
    stats = s.get("stats", {})
    lines = [f"Dataset **{s['dataset']}:v{s['version']}** ({s.get('format', '')}): {s['num_images']} images in "
             f"{len(s['classes'])} {task.class_word}; split {', '.join(f'{k} {v}' for k, v in s['splits'].items())}.",
             *task.dataset_lines(stats)]
    counts = task.class_counts(stats)
    if counts:
        lo, hi = min(counts.values()), max(counts.values())
        balance = "balanced" if hi <= 1.5 * lo else f"unbalanced: {hi} vs {lo} {task.unit} between the largest and smallest class"
        lines.append(f"{task.class_word.capitalize()} ({balance}): " + ", ".join(f"{c} {n}" for c, n in list(counts.items())[:12])
                     + (" ..." if len(counts) > 12 else ""))
    for issue in s.get("issues", [])[:8]:
        n = len(issue.get("files", [])) or issue.get("count", "")
        fix = issue.get("fix") or ""
        lines.append(f"- {issue['severity']}: {issue['message']}" + (f" ({n} files)" if n else "")
                     + (f" Fix: {fix}" if fix and fix not in issue["message"] else ""))
    if not s.get("issues"):
        lines.append("No problems found.")
    return "\n".join(lines)


def metric_name(task: str | None) -> str:
    return TASKS.get(task or DEFAULT_TASK).metric_label


def defaults_sentence(resolved: dict) -> str:
    """The resolver's choices a person cares about, in words (its reasons, from the run's `why`)."""
    why = {k: "as you asked" if v == "given" else v for k, v in resolved.get("why", {}).items()}
    flips = "no mirrored copies" if not resolved.get("hflip") else "mirrored copies"
    start = "ImageNet weights" if resolved.get("pretrained") == "imagenet" else "scratch"
    return (f"Input {resolved['img_size']} px ({why.get('img_size', 'given')}); training starts from {start} "
            f"({why.get('pretrained', 'given')}) with {flips} ({why.get('hflip', 'given')}).")


def progress_text(run: dict) -> str:
    prog, history = run.get("progress") or {}, run.get("history") or []
    if not prog or "epoch" not in prog:
        return f"Training is {run['status']}: starting up (loading the images)."
    parts = [f"epoch {prog['epoch']}" + (f" of at most {prog['epochs']}" if prog.get("epochs") else "")]
    if history:
        last = history[-1]
        name = TASKS.get(run.get("config", {}).get("task") or DEFAULT_TASK).metric_label
        parts.append(f"validation {name} {last.get('val_metric', last.get('val_accuracy', 0)):.1%} after epoch {last['epoch']}")
    loss = prog.get("train_loss", prog.get("loss"))
    if loss is not None:
        parts.append(f"loss {loss:.3f}")
    if prog.get("eta_s") is not None:
        parts.append(f"about {max(0, prog['eta_s']) / 60:.1f} min left")
    return "Training is running: " + ", ".join(parts) + ". Say *stop* to end it early."


def exports_table(exports: list[dict], results: list[dict], metric: str = "accuracy") -> str:
    lat = {(r["target"], r["precision"]): r["latency_ms"]["p50"] for r in results if r["measured"]}
    rows = [f"| target | precision | {metric} | change | size MB | latency here |", "|---|---|---|---|---|---|"]
    for e in exports:
        acc = "runs on its device" if e["accuracy"] is None else f"{e['accuracy']:.2%}"
        drop = "–" if e["drop"] is None else f"{-e['drop']:+.2f} pts"
        ms = lat.get((e["target"], e["precision"]))
        rows.append(f"| {e['target']} | {e['precision']} | {acc} | {drop} | {e['size_mb']:.2f} | "
                    f"{'–' if ms is None else f'{ms:.2f} ms'} |")
    return "\n".join(rows)
