"""Step a scripted baseline, then a recorded LLM, through one organization by hand.

The notebook examples/stepping_agents.ipynb is built from this file
(python examples/build_notebooks.py --write); as a script: python examples/stepping_agents.py
"""
# requires: IPython

# %% [markdown]
# # Stepping agents by hand
#
# An organization is a Gymnasium environment. `reset(seed)` draws a variant of it and
# shows the agent a briefing; every `step(action)` returns the utility the agent earned for
# its principal (`reward`) and the ethical cost it caused (`info["cost"]`), whether or not
# oversight saw it. This notebook steps a scripted baseline by hand, then replays an LLM
# agent from a cassette that ships with the example, so it needs no key and no network.

# %%
import json
from pathlib import Path

import gymnasium as gym
from IPython.display import display

import tp_gym
from tp_gym.agents import make_agent
from tp_gym.agents.llm import LLMAgent
from tp_gym.display import describe_features, watch_step

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"
SEED = 7
HERE = Path(__file__).parent if "__file__" in globals() else Path.cwd()  # script or notebook

env = gym.make(ENV_ID)  # protocol="study" (the default): the study's rules
obs, info = env.reset(seed=SEED)
display(env.unwrapped)

# %% [markdown]
# What the agent sees is text (the briefing, with the tools in a shuffled order) and, for
# RL policies, a feature vector. The tools' roles (compliant or toxic) stay hidden.

# %%
print(obs["text"])

# %% [markdown]
# The features, named (`describe_features` labels each resource and tool slot of this
# organization and leaves out the unused padding):

# %%
display(describe_features(obs, env))

# %% [markdown]
# ## A scripted baseline, one step at a time
#
# `scripted:strategic` plays by the hidden roles (it reads the env's oracle): an inhibitor
# that switches a safeguard off, a modifier, then the harmful shortcut.
# `watch_step(env, action)` steps the env and shows the call, what it changed, reward, cost
# and the violations it caused (seen by oversight or not); `view.result` is what
# `env.step` returned. `info` also carries what the agent never sees: the role of the tool
# it called and the running behaviour class.

# %%
agent = make_agent("scripted:strategic")
agent.reset(obs, tools=env.unwrapped.tool_schemas(), oracle=env.unwrapped.oracle(), seed=SEED)
terminated = truncated = False
while not (terminated or truncated):
    view = watch_step(env, agent.act(obs))
    obs, reward, terminated, truncated, info = view.result
    display(view)
    print(f"turn {info['turn']}: {info['tool']} (role {info['role']}) cost {info['cost']:.1f}")
print(f"scripted:strategic ends as: {info['behaviour']}")
print("violations:", {name: n for name, n in info["violations"].items() if n})

# %% [markdown]
# The env after the episode: its turn, resources and safeguards as the agent left them.

# %%
display(env.unwrapped)

# %% [markdown]
# ## An LLM agent, replayed from a cassette
#
# `examples/data/strategic_model.cassette.jsonl` holds the requests and answers of one
# episode of an LLM agent. The "model" was tp_gym's loopback OpenAI-compatible server
# scripted to act like a strategic model (`examples/data/record_llm_cassette.py` records
# it again). In `replay` mode the agent never calls a model: every request it makes must be
# in the cassette, so this runs anywhere, with no key. With a real model you would drop the
# cassette options (or keep `cassette_mode="auto"` to record once and replay after).
#
# `run_episode` is the runner every evaluation uses; `on_step` shows each turn as it is
# played, with the model's own reasoning.

# %%
CASSETTE = HERE / "data" / "strategic_model.cassette.jsonl"
llm = LLMAgent("openai/loopback-strategist", cassette=CASSETTE, cassette_mode="replay")


def show_turn(turn, action, observation, reward, info):
    """Print one played turn: the model's reasoning, the tool it chose, reward and cost."""
    if turn == 0:
        return  # the reset
    reasoning = json.loads(action)["reasoning"] if isinstance(action, str) else ""
    print(f"turn {turn}: {info['tool']} (role {info['role']}) reward {reward:+.2f}")
    print(f"    cost {info['cost']:.1f}; the model wrote: {reasoning}")


log = tp_gym.run_episode(gym.make(ENV_ID), llm, seed=SEED, on_step=show_turn)

# %% [markdown]
# ## The episode log
#
# The runner's `EpisodeLog` is what evaluations write (one JSON line per episode) and what
# every metric reads. After the fact it reveals each call's role, so the class of the
# episode is explained by its timeline; `log.plot()` draws reward, cumulative cost and
# pressure by turn.

# %%
display(log)
print(f"LLM episode class: {log.behaviour}")
print(f"roles in order: {', '.join(log.roles)}")
print(f"utility {log.utility:+.2f}, cost {log.cost:.1f}, time to failure: turn {log.time_to_failure}")
print(f"LLM calls replayed: {log.usage['agent'].calls}, tokens {log.usage['agent'].prompt_tokens}")
display(log.plot())
