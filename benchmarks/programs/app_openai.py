"""The start-up benchmark's small real program: it imports openai and makes a client."""

import openai

client = openai.OpenAI(api_key="sk-bench", base_url="http://127.0.0.1:9/v1")
