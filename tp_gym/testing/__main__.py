"""``python -m tp_gym.testing``: run the loopback OpenAI-compatible server until Ctrl-C."""

from tp_gym.testing.openai_server import main

raise SystemExit(main())
