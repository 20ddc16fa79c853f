"""The team's exports as a team loads them: DPO and KTO lines through the `datasets` library.

Two answers to one question are made by the real server (non-streamed, with their receipts),
one liked and one disliked through `POST /v1/feedback`; the exports, fetched with the admin
token `cargo xtask test` gives the server (VITRINA_ADMIN_TOKEN), must load with
`datasets.load_dataset("json", ...)` and hold them.
"""

import json
import os
import time
import urllib.request

import datasets
import pytest

BASE_URL = os.environ.get("VITRINA_URL")
TOKEN = os.environ.get("VITRINA_ADMIN_TOKEN")


def post(path, body):
    request = urllib.request.Request(
        f"{BASE_URL}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def export(name, directory):
    request = urllib.request.Request(
        f"{BASE_URL}/v1/export/{name}.jsonl", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    path = directory / f"{name}.jsonl"
    with urllib.request.urlopen(request, timeout=60) as response:
        path.write_bytes(response.read())
    return str(path)


@pytest.fixture(scope="module")
def rated_question():
    assert BASE_URL and TOKEN, "VITRINA_URL and VITRINA_ADMIN_TOKEN are set by `cargo xtask test`"
    question = f"¿Qué es un corpus paralelo? ({time.time_ns()})"
    messages = [{"role": "user", "content": question}]
    turn = f"turn-{time.time_ns()}"
    answers = []
    for seed, rating in [(11, "up"), (12, "down")]:
        settings = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 8, "seed": seed}
        completion = post(
            "/v1/chat/completions",
            {"model": "smollm2-135m", "messages": messages, **settings},
        )
        answer = completion["choices"][0]["message"]["content"]
        post(
            "/v1/feedback",
            {
                "answer_key": f"answer-{seed}-{time.time_ns()}",
                "conversation": f"conversation-{time.time_ns()}",
                "turn_key": turn,
                "messages": messages,
                "pregunta": question,
                "respuesta": answer,
                "rating": rating,
                "provenance": {"backend": "server", **settings},
                "receipt": completion["receipt"],
            },
        )
        answers.append(answer)
    return question, answers


def test_dpo_export_loads_with_datasets(rated_question, tmp_path):
    question, (liked, disliked) = rated_question
    pairs = datasets.load_dataset("json", data_files=export("dpo", tmp_path), split="train")
    assert pairs.column_names == ["prompt", "chosen", "rejected"]
    prompt = [{"role": "user", "content": question}]
    chosen = [{"role": "assistant", "content": liked}]
    rejected = [{"role": "assistant", "content": disliked}]
    assert {"prompt": prompt, "chosen": chosen, "rejected": rejected} in list(pairs)


def test_kto_export_loads_with_datasets(rated_question, tmp_path):
    question, (liked, disliked) = rated_question
    rated = datasets.load_dataset("json", data_files=export("kto", tmp_path), split="train")
    assert rated.column_names == ["prompt", "completion", "label"]
    assert rated.features["label"].dtype == "bool"
    rows = list(rated)
    prompt = [{"role": "user", "content": question}]
    for answer, label in [(liked, True), (disliked, False)]:
        completion = [{"role": "assistant", "content": answer}]
        assert {"prompt": prompt, "completion": completion, "label": label} in rows
