"""The official `openai` Python client against the real server and the real SmolLM2 model.

`cargo xtask test` starts the server and passes its address in VITRINA_URL.
"""

import os

import openai
import pytest

BASE_URL = os.environ.get("VITRINA_URL")
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client():
    assert BASE_URL, "VITRINA_URL is not set: run these tests with `cargo xtask test`"
    return openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key="not-needed", max_retries=0)


def test_lists_the_served_model(client):
    assert [model.id for model in client.models.list()] == ["smollm2-135m"]


def test_answers_with_text_and_usage(client):
    answer = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=12, temperature=0)
    text = answer.choices[0].message.content
    assert answer.choices[0].message.role == "assistant"
    assert any(character.isalpha() for character in text), text
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 10
    assert 1 <= answer.usage.completion_tokens <= 12
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streams_the_same_greedy_answer(client):
    whole = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=12, temperature=0)
    stream = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=12, temperature=0, stream=True)
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        usage = getattr(chunk, "usage", None) or usage
    assert len(pieces) > 1, "the answer arrives in several pieces"
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_errors_reach_the_client_with_their_message(client):
    with pytest.raises(openai.BadRequestError, match="`messages` is empty"):
        client.chat.completions.create(model="smollm2-135m", messages=[], max_tokens=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=0)
