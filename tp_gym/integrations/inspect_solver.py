"""The Inspect solver that plays one tp_gym episode with the task's model.

`tp_gym_agent` resets the sample's organization (``gym.make(env_id, protocol=...)``, reset
with the sample's seed and variables, as tp_gym's runner does) and loops until the episode
terminates or is truncated. Each model answer is one `OrgEnv.step`, recorded by tp_gym's
`EpisodeRecorder`, so the episode is judged by the same code as ``tp-gym run``.

The messages are those of tp_gym's LLM agent (`tp_gym.llm.conversation.Conversation`), in
the reply format and context policy the env's protocol calls for
(`tp_gym.agents.llm.DEFAULT_REPLY_FORMAT`, `DEFAULT_CONTEXT`):

- ``study``: the study's JSON reply format (the numbered tools listed in the system
  prompt, one JSON object per turn, its raw text sent to `env.step`) and the study's
  6-turn window with its summary of older turns;
- ``extended``: native tool calling with the organization's shown tools
  (`OrgEnv.tool_schemas`, as Inspect `ToolInfo`), each call one step, the whole history
  sent every turn.

When the episode ends, the judgement (`tp_gym.runs.recorder.judgement_of`) and the whole
episode log (`EpisodeLog`, JSON) go into the sample's store under `JUDGEMENT_KEY` and
`EPISODE_KEY`; the scorer only reads them, and `episode_logs` rebuilds tp_gym logs from an
Inspect log for tp_gym's own metrics and report. `TaskState.messages` ends as the whole
conversation (every turn, not only the window the model saw last), for ``inspect view``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ModelOutput,
    get_model,
)
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.tool import ToolCall, ToolInfo

from tp_gym.llm.completion import CalledTool, Completion

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog

    from tp_gym.runs.episode import EpisodeLog

JUDGEMENT_KEY = "tp_gym:judgement"
"""Store key of the episode's judgement (`tp_gym.runs.recorder.judgement_of`)."""
EPISODE_KEY = "tp_gym:episode"
"""Store key of the whole episode log (`EpisodeLog.model_dump(mode="json")`)."""
AGENT_PREFIX = "inspect:"
"""Logs name the agent ``inspect:<model>`` (``inspect:openai/gpt-4o-mini``)."""


@solver
def tp_gym_agent() -> Solver:
    """Play the sample's tp_gym episode with the task's model, one env step per answer."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        from tp_gym.integrations.live import LiveEpisode
        from tp_gym.runs.episode import Usage

        meta = state.metadata
        model = get_model()
        episode = LiveEpisode.start(
            meta["env_id"],
            meta["protocol"],
            seed=meta["seed"],
            variables=meta["variables"],
            agent_name=AGENT_PREFIX + str(model),
        )
        recorder, conversation = episode.recorder, episode.conversation
        try:
            tools = tool_infos(conversation.request_tools or [])
            usage = Usage(priced=False)
            try:
                while not recorder.done:
                    output = await model.generate(
                        inspect_messages(conversation.messages()),
                        tools=tools,
                        tool_choice="auto" if tools else None,
                    )
                    state.output = output
                    completion = completion_of(output)
                    usage.calls += 1
                    usage.prompt_tokens += completion.prompt_tokens
                    usage.completion_tokens += completion.completion_tokens
                    action = conversation.add(completion, len(conversation.turns) + 1)
                    observation, *_ = recorder.step(
                        action, messages=[dict(conversation.turns[-1].assistant)]
                    )
                    conversation.observe(str(observation["text"]))
            except Exception as error:
                # A model call that failed for good, or an Inspect limit: the episode is
                # errored (outside MR, as in tp_gym); Inspect then handles the exception.
                keep(state, recorder.finish(usage={"agent": usage}, error=error), conversation)
                raise
            keep(state, recorder.finish(usage={"agent": usage}), conversation)
        finally:
            episode.env.close()
        state.completed = True
        return state

    return solve


def keep(state: TaskState, log: EpisodeLog, conversation: Any) -> None:
    """Put the judged episode in the sample's store and its conversation in the transcript."""
    from tp_gym.runs.recorder import judgement_of

    state.messages = inspect_messages(whole_conversation(conversation))
    state.store.set(JUDGEMENT_KEY, judgement_of(log))
    state.store.set(EPISODE_KEY, log.model_dump(mode="json"))


def tool_infos(schemas: list[dict[str, Any]]) -> list[ToolInfo]:
    """OpenAI function schemas (`OrgEnv.tool_schemas`) as Inspect `ToolInfo`s."""
    infos = []
    for schema in schemas:
        function = schema.get("function", schema)
        infos.append(
            ToolInfo.model_validate(
                {
                    "name": function["name"],
                    "description": function.get("description", ""),
                    "parameters": function.get("parameters")
                    or {"type": "object", "properties": {}},
                }
            )
        )
    return infos


def completion_of(output: ModelOutput) -> Completion:
    """Inspect's model answer as tp_gym's `Completion` (what the conversation reads).

    A tool call's arguments go on as JSON text; one Inspect could not parse (``parse_error``)
    goes on as that error text, so the env counts it as the malformed call it was.
    """
    message = output.message
    calls = tuple(
        CalledTool(
            call.id or "",
            call.function,
            call.parse_error if call.parse_error else json.dumps(call.arguments),
        )
        for call in message.tool_calls or []
    )
    usage = output.usage
    return Completion(
        content=message.text or None,
        tool_calls=calls,
        finish_reason=output.stop_reason,
        prompt_tokens=usage.input_tokens if usage is not None else 0,
        completion_tokens=usage.output_tokens if usage is not None else 0,
        priced=False,
    )


def inspect_messages(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """OpenAI-style chat messages (as `Conversation` builds them) as Inspect messages."""
    names: dict[str, str] = {}
    converted: list[ChatMessage] = []
    for message in messages:
        role = message["role"]
        content = message.get("content") or ""
        if role == "system":
            converted.append(ChatMessageSystem(content=content))
        elif role == "user":
            converted.append(ChatMessageUser(content=content))
        elif role == "assistant":
            calls = [_tool_call(raw) for raw in message.get("tool_calls") or []]
            names.update({call.id: call.function for call in calls})
            converted.append(ChatMessageAssistant(content=content, tool_calls=calls or None))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            converted.append(
                ChatMessageTool(
                    content=content, tool_call_id=call_id, function=names.get(call_id or "")
                )
            )
        else:
            raise ValueError(f"a chat message with role {role!r} has no Inspect form")
    return converted


def _tool_call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function", {})
    text = function.get("arguments") or "{}"
    try:
        arguments = json.loads(text)
        error = None if isinstance(arguments, dict) else "arguments are not a JSON object"
    except ValueError as problem:
        arguments, error = None, str(problem)
    return ToolCall(
        id=str(raw.get("id") or ""),
        function=str(function.get("name", "")),
        arguments=arguments if isinstance(arguments, dict) else {},
        parse_error=error,
    )


def whole_conversation(conversation: Any) -> list[dict[str, Any]]:
    """Every message of an episode's conversation: system, briefing and all turns."""
    messages = [conversation.system, {"role": "user", "content": conversation.briefing}]
    for turn in conversation.turns:
        messages.append(turn.assistant)
        messages += turn.responses
    return messages


def episode_logs(log: EvalLog) -> list[EpisodeLog]:
    """The tp_gym episode logs of an Inspect eval log's samples (those that finished).

    So tp_gym's metrics and report run on an Inspect run:
    ``tp_gym.metrics.summarize(episode_logs(read_eval_log(path)))``.
    """
    from tp_gym.runs.episode import EpisodeLog

    return [
        EpisodeLog.model_validate(sample.store[EPISODE_KEY])
        for sample in log.samples or []
        if EPISODE_KEY in sample.store
    ]
