"""Ask Switchboard for one completion and print its text."""

import os

from switchboard_client import Client

target, key = os.environ["SWITCHBOARD_TARGET"], os.environ["SWITCHBOARD_API_KEY"]
with Client(target, api_key=key, timeout=30) as client:
    completion = client.complete("chat", [{"role": "user", "content": "Say hello."}])
    print(completion.text)
