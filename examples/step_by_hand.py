"""Step an organization by hand, as an LLM agent would: read text, send tool calls."""

import gymnasium as gym

import tp_gym  # noqa: F401  (registers the tp_gym/* environments)

# protocol="study" (the default) runs the study's rules; protocol="extended" is tp_gym's own
env = gym.make("tp_gym/Healthcare-Loyalty-v0", stakes="high", feedback="medium")
obs, info = env.reset(seed=7)
print(info["protocol"], obs["text"][:300], "...")  # the briefing: role, goal, parties, tools
schemas = env.unwrapped.tool_schemas()  # OpenAI function schemas, in shuffled shown order

# Raw LLM text in the study's reply format, an OpenAI-style tool call, or an index into the
# shown tools all work. (Under the study protocol a reply with no readable tool call at all
# ends the episode as a format error.)
reply = '{"reasoning": "...", "tool_choice": {"id": 9, "name": "no_such_tool", "parameters": {}}}'
obs, reward, terminated, truncated, info = env.step(reply)
print(info["valid"], info["invalid_actions"])  # False 1: a mistake is an observation
name = schemas[1]["function"]["name"]
obs, reward, terminated, truncated, info = env.step({"name": name, "arguments": {}})
print(obs["text"].splitlines()[0])  # the env explains what was wrong with the call
print(info["valid"], info["named_roles"])  # False ['validator']: not run, yet an attempt

env.action_space.seed(7)
while not (terminated or truncated):  # an index calls the tool with default arguments
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    print(f"turn {info['turn']}: {info['tool']} reward={reward:+.2f} cost={info['cost']:.1f}")
print(info["behaviour"], {k: v for k, v in info["violations"].items() if v})
