"""The RL utility/cost frontier: trained on the `train` organizations, measured on `heldout`.

Run: python benchmarks/rl_frontier.py [--write] [--episodes 20000] [--eval-seeds 50] [--workers 2]

For each setting (reward only; `LagrangianReward` at several cost limits; fixed cost
penalties via `PolicyGradient`'s ``cost_weight``) one `tp_gym.learn.PolicyGradient` is trained
on episodes drawn across the `train` suite's cells (each episode's cell drawn with a seeded
rng, env seeds 0, 1, 2, ... in order; each cell an env made with its protocol and variables,
``slim_info=True``, wrapped in `FeatureObservation`). The Lagrangian settings keep one
multiplier for the whole policy: each cell's `LagrangianReward` is handed the shared
multiplier before its episode and its update is read back after it.

Then the trained policy is evaluated (actions sampled, no learning, full info) on every
`train` cell at unseen seeds (from `EVAL_SEED`) and on every `heldout` cell at the same
seeds: MR and the compliant-terminal share (``standard_executor`` ended the episode) with
95% Wilson intervals, mean utility and mean cost per episode with 95% t intervals, all over
the pooled episodes (cells x seeds). Everything is seeded: reruns give the same numbers, with
any number of workers. ``--write`` writes docs/rl.md's table and docs/rl_frontier.png.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import tp_gym
from tp_gym.learn import Episode, PolicyGradient, misalignment_rate
from tp_gym.metrics import mean_interval, wilson_interval
from tp_gym.wrappers import FeatureObservation, LagrangianReward

ROOT = Path(__file__).resolve().parent.parent
EVAL_SEED = 100_000
LAGRANGE_LR = 0.05


@dataclass(frozen=True)
class Setting:
    """How one policy is trained: ``kind`` is "reward", "lagrangian" or "penalty"."""

    kind: str
    value: float = 0.0

    @property
    def label(self) -> str:
        if self.kind == "untrained":
            return "untrained (uniform)"
        if self.kind == "reward":
            return "reward only"
        if self.kind == "lagrangian":
            return f"Lagrangian, limit {self.value:g}"
        return f"fixed penalty {self.value:g}"


SETTINGS: tuple[Setting, ...] = (
    Setting("untrained"),
    Setting("reward"),
    Setting("lagrangian", 20.0),
    Setting("lagrangian", 10.0),
    Setting("lagrangian", 5.0),
    Setting("lagrangian", 0.0),
    Setting("penalty", 0.1),
    Setting("penalty", 0.3),
    Setting("penalty", 1.0),
)


def make_env(cell: tp_gym.Cell, slim: bool) -> gym.Env:
    return FeatureObservation(
        gym.make(cell.env_id, protocol=cell.protocol, slim_info=slim, **cell.variables)
    )


def train(setting: Setting, episodes: int, seed: int = 0) -> tuple[PolicyGradient, dict]:
    """One policy trained on `episodes` episodes across the `train` cells."""
    cells = tp_gym.suite("train")
    envs: list[gym.Env] = []
    for cell in cells:
        env = make_env(cell, slim=True)
        if setting.kind == "lagrangian":
            env = LagrangianReward(env, cost_limit=setting.value, lr=LAGRANGE_LR)
        envs.append(env)
    cost_weight = setting.value if setting.kind == "penalty" else 0.0
    policy = PolicyGradient(seed=seed)
    rng = np.random.default_rng(seed)
    lam = 0.0
    lams: list[float] = []
    tail_costs: list[float] = []
    for i in range(episodes):
        env = envs[int(rng.integers(len(envs)))]
        if isinstance(env, LagrangianReward):
            env.multiplier = lam
        episode = policy.play(env, i, cost_weight=cost_weight)
        if isinstance(env, LagrangianReward):
            lam = env.multiplier
            lams.append(lam)
        if i >= episodes - episodes // 10:
            tail_costs.append(episode.cost)
    return policy, {
        "final_multiplier": lam if lams else None,
        "max_multiplier": max(lams) if lams else None,
        "train_tail_cost": float(np.mean(tail_costs)) if tail_costs else float("nan"),
    }


def evaluate(policy: PolicyGradient, suite: str, seeds: int) -> dict[str, list[Episode]]:
    """The episodes played on each organization of `suite` (all its cells), by env id."""
    played: dict[str, list[Episode]] = {}
    for cell in tp_gym.suite(suite):
        env = make_env(cell, slim=False)
        played.setdefault(cell.env_id, [])
        played[cell.env_id] += policy.evaluate(env, range(EVAL_SEED, EVAL_SEED + seeds))
    return played


def summarize(by_org: dict[str, list[Episode]]) -> dict[str, Any]:
    """MR, compliant-terminal share (Wilson) and mean utility and cost (t), 95%, over all
    episodes; ``by_org`` holds each organization's (MR, mean cost)."""
    played = [e for episodes in by_org.values() for e in episodes]
    n = len(played)
    misaligned = round(misalignment_rate(played) * n)
    compliant = sum(e.terminal == "standard_executor" for e in played)
    utility = mean_interval([e.utility for e in played])
    cost = mean_interval([e.cost for e in played])
    return {
        "n": n,
        "mr": (misaligned / n, *wilson_interval(misaligned, n)),
        "compliant": (compliant / n, *wilson_interval(compliant, n)),
        "utility": utility,
        "cost": cost,
        "length": float(np.mean([e.length for e in played])),
        "by_org": {
            env_id.removeprefix("tp_gym/").removesuffix("-v0"): (
                misalignment_rate(episodes),
                float(np.mean([e.cost for e in episodes])),
            )
            for env_id, episodes in by_org.items()
        },
    }


def run_setting(args: tuple[Setting, int, int]) -> dict[str, Any]:
    setting, episodes, seeds = args
    if setting.kind == "untrained":
        episodes = 0  # zero weights: uniform over the shown tools
    start = time.perf_counter()
    policy, training = train(setting, episodes)
    result = {
        "setting": setting,
        "label": setting.label,
        "training": training,
        "train": summarize(evaluate(policy, "train", seeds)),
        "heldout": summarize(evaluate(policy, "heldout", seeds)),
    }
    result["seconds"] = time.perf_counter() - start
    return result


def frontier(
    episodes: int = 20000,
    eval_seeds: int = 50,
    settings: tuple[Setting, ...] = SETTINGS,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Train and evaluate every setting; one result dict per setting, in `settings` order.

    Each dict: ``setting``, ``label``, ``training`` (final and largest Lagrange multiplier,
    mean cost over the last tenth of training), ``train`` and ``heldout`` (`summarize`),
    ``seconds``."""
    jobs = [(setting, episodes, eval_seeds) for setting in settings]
    if workers <= 1:
        return [run_setting(job) for job in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(run_setting, jobs))


def _share(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.0%} [{v[1]:.0%}, {v[2]:.0%}]"


def _mean(v: tuple[float, float, float]) -> str:
    return f"{v[0]:+.2f} [{v[1]:+.2f}, {v[2]:+.2f}]"


def _cost(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | cells | episodes | MR | compliant terminal | utility | cost | final lam |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        lam = result["training"]["final_multiplier"]
        for split in ("train", "heldout"):
            s = result[split]
            lines.append(
                f"| {result['label']} | {split} | {s['n']} | {_share(s['mr'])} | "
                f"{_share(s['compliant'])} | {_mean(s['utility'])} | {_cost(s['cost'])} | "
                f"{'-' if lam is None else f'{lam:.2f}'} |"
            )
    return "\n".join(lines)


def org_table(results: list[dict[str, Any]], split: str = "heldout") -> str:
    """MR / mean cost per organization of `split`, one column per setting."""
    orgs = list(results[0][split]["by_org"])
    lines = [
        "| organization | " + " | ".join(r["label"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for org in orgs:
        row = [
            f"{r[split]['by_org'][org][0]:.0%} / {r[split]['by_org'][org][1]:.1f}" for r in results
        ]
        lines.append(f"| {org} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    names = {
        "untrained": "untrained",
        "reward": "reward only",
        "lagrangian": "Lagrangian",
        "penalty": "fixed penalty",
    }
    colors = {  # reward only last, on top of the curves that start from it
        "untrained": "tab:gray",
        "lagrangian": "tab:blue",
        "penalty": "tab:green",
        "reward": "tab:red",
    }
    for split, marker, style in (("train", "o", "-"), ("heldout", "s", "--")):
        for kind, color in colors.items():
            points = [r for r in results if r["setting"].kind == kind]
            if kind not in (
                "reward",
                "untrained",
            ):  # each curve starts from reward only (no penalty)
                points += [r for r in results if r["setting"].kind == "reward"]
            points.sort(key=lambda r: r[split]["cost"][0])
            cost = np.array([r[split]["cost"] for r in points])
            utility = np.array([r[split]["utility"] for r in points])
            ax.errorbar(
                cost[:, 0],
                utility[:, 0],
                xerr=[cost[:, 0] - cost[:, 1], cost[:, 2] - cost[:, 0]],
                yerr=[utility[:, 0] - utility[:, 1], utility[:, 2] - utility[:, 0]],
                fmt=marker,
                linestyle=style if kind not in ("reward", "untrained") else "none",
                color=color,
                mfc=color if split == "train" else "white",
                mec=color,
                ms=9 if kind == "reward" else 7,
                zorder=5 if kind == "reward" else 2,
                lw=1,
                capsize=2,
                label=f"{names[kind]} ({split})",
            )
            for r, x, y in zip(points, cost[:, 0], utility[:, 0]):
                if r["setting"].kind == kind not in ("reward", "untrained"):
                    label = f"{r['setting'].value:g}"
                    ax.annotate(
                        label,
                        (x, y),
                        textcoords="offset points",
                        xytext=(5, 4),
                        fontsize=7,
                        color=color,
                    )
    ax.set_xlabel("mean cost per episode (severity of violations)")
    ax.set_ylabel("mean utility per episode")
    ax.set_title(
        "Trained on the train organizations (filled, solid),\n"
        "measured there and on unseen heldout organizations (open, dashed)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20000, help="training episodes per setting")
    parser.add_argument("--eval-seeds", type=int, default=50, help="evaluation seeds per cell")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="write docs/rl.md's table and plot")
    args = parser.parse_args()
    start = time.perf_counter()
    results = frontier(args.episodes, args.eval_seeds, workers=args.workers)
    elapsed = time.perf_counter() - start
    print(table(results))
    print("\nheldout organizations, MR / mean cost:\n" + org_table(results))
    print(
        f"\n{len(SETTINGS)} settings, {args.episodes} training episodes each, "
        f"{args.eval_seeds} seeds per cell: {elapsed:.0f} s with {args.workers} workers"
    )
    if args.write:
        plot(results, ROOT / "docs" / "rl_frontier.png")
        _write_table(results, args)


def _write_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Replace the generated block of docs/rl.md (between the markers) with this run's table."""
    path = ROOT / "docs" / "rl.md"
    begin, end = "<!-- frontier table: begin -->", "<!-- frontier table: end -->"
    text = path.read_text() if path.exists() else f"{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    block = (
        f"{begin}\n{table(results)}\n\n"
        f"Per heldout organization (all three feedback levels), MR / mean cost:\n\n"
        f"{org_table(results)}\n\n"
        f"`--episodes {args.episodes} --eval-seeds {args.eval_seeds}`: "
        f"{results[0]['train']['n']} train-cell and {results[0]['heldout']['n']} heldout-cell "
        f"evaluation episodes per setting.\n{end}"
    )
    path.write_text(head + block + tail)
    print(f"wrote {path} and {path.parent / 'rl_frontier.png'}")


if __name__ == "__main__":
    main()
