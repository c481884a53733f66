"""tp_gym's organizations in other harnesses: Inspect AI tasks and a verifiers environment.

Each adapter steps `OrgEnv` and judges its episodes through `tp_gym.runs.recorder`, the same
code `tp-gym run` uses, so a harness never carries its own copy of the judgement.
"""
