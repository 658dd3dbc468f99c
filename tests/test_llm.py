"""perfagent.model.llm against the real litellm -> openai code path, served by a fake OpenAI server on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from perfagent.model.llm import (
    LOCAL_PLACEHOLDER_KEY,
    Budget,
    BudgetExceeded,
    LiteLLMModel,
    ModelConfigError,
    ModelError,
    Reply,
    ScriptedModel,
    ScriptExhausted,
    Session,
    Trajectory,
    make_model,
)
from tests.conftest import ROOT
from tests.fake_openai import count_words, serve

MESSAGES = [
    {"role": "system", "content": "You are a performance engineer."},
    {"role": "user", "content": "Make this loop faster please"},
]


def fake_model(fake, name="openai/fake-model", **options) -> LiteLLMModel:
    model = LiteLLMModel(name, api_base=fake.base_url, api_key="test-key", **options)
    model.retry_delay = 0.01  # keep retry tests fast
    return model


def write_script(path: Path, responses, label="demo") -> Path:
    path.write_text(json.dumps({"label": label, "responses": responses}))
    return path


def reply(cost):
    return Reply(text="x", prompt_tokens=1, completion_tokens=1, cost_usd=cost, model="m", seconds=0.0)


# --- LiteLLMModel over HTTP -------------------------------------------------------------------------------------


def test_reply_text_and_tokens_come_from_the_server():
    with serve(["use a set for membership"]) as fake:
        reply = fake_model(fake, temperature=0.2).complete(MESSAGES)

    assert reply.text == "use a set for membership"
    assert reply.prompt_tokens == count_words(MESSAGES)
    assert reply.completion_tokens == 5
    assert reply.model == "openai/fake-model"
    assert reply.seconds > 0
    [request] = fake.requests
    assert request.body["model"] == "fake-model"
    assert request.body["messages"] == MESSAGES
    assert request.body["temperature"] == 0.2
    assert request.headers["Authorization"] == "Bearer test-key"


def test_replies_are_served_in_order():
    with serve(["first", "second"]) as fake:
        model = fake_model(fake)
        assert [model.complete(MESSAGES).text for _ in range(2)] == ["first", "second"]


def test_local_server_without_a_key_gets_a_placeholder_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with serve(["ok"]) as fake:
        model = LiteLLMModel("openai/fake-model", api_base=fake.base_url)
        model.check_environment()
        assert model.complete(MESSAGES).text == "ok"
    assert fake.requests[0].headers["Authorization"] == f"Bearer {LOCAL_PLACEHOLDER_KEY}"


def test_server_errors_are_retried_until_success():
    with serve(["recovered"]) as fake:
        fake.fail_next(2, 500)
        reply = fake_model(fake, num_retries=2).complete(MESSAGES)
    assert reply.text == "recovered"
    assert len(fake.requests) == 3


def test_server_error_after_all_retries_is_a_model_error():
    with serve(["never served"]) as fake:
        fake.fail_next(5, 503)
        with pytest.raises(ModelError, match=r"HTTP 503.*after 2 attempts") as caught:
            fake_model(fake, num_retries=1).complete(MESSAGES)
    assert not isinstance(caught.value, ModelConfigError)
    assert len(fake.requests) == 2


def test_rejected_key_is_a_config_error_and_not_retried():
    with serve(["never served"]) as fake:
        fake.fail_next(1, 401)
        with pytest.raises(ModelConfigError, match="API key was rejected"):
            fake_model(fake, num_retries=3).complete(MESSAGES)
    assert len(fake.requests) == 1


def test_timeout_raises_model_error_quickly():
    with serve(["too late"]) as fake:
        fake.delay(300)  # the reply would come after 300 s: a call back within 60 s was cut short by the timeout,
        start = time.perf_counter()  # however slow the machine (5 s at load 4, with litellm's first import)
        with pytest.raises(ModelError, match=r"no reply within 0.3 s"):
            fake_model(fake, timeout=0.3, num_retries=0).complete(MESSAGES)
        assert time.perf_counter() - start < 60


def test_unreachable_server_is_a_model_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = LiteLLMModel("openai/fake-model", api_base=f"http://127.0.0.1:{port}/v1", api_key="k", num_retries=1)
    model.retry_delay = 0.01
    with pytest.raises(ModelError, match=r"127\.0\.0\.1.*connection refused.*after 2 attempts") as caught:
        model.complete(MESSAGES)
    assert "HTTP 500" not in str(caught.value)  # litellm's own wording for it


def test_a_reply_that_is_not_json_says_so():
    """litellm reports it as "InternalServerError (HTTP 500)"; the cause further down the chain is what to fix."""
    with serve([]) as fake:
        fake.malformed_next(2)
        with pytest.raises(ModelError, match=r"the server's reply is not JSON: is it an OpenAI-compatible") as caught:
            fake_model(fake, num_retries=1).complete(MESSAGES)
    assert "HTTP 500" not in str(caught.value)


def test_cost_is_known_for_a_priced_model():
    import litellm

    with serve(["cheap answer here"]) as fake:
        reply = fake_model(fake, "openai/gpt-4o-mini").complete(MESSAGES)
    price = litellm.model_cost["gpt-4o-mini"]
    expected = (
        reply.prompt_tokens * price["input_cost_per_token"] + reply.completion_tokens * price["output_cost_per_token"]
    )
    assert reply.cost_usd == pytest.approx(expected)
    assert reply.cost_usd > 0


def test_cost_is_none_for_an_unknown_model():
    with serve(["answer"]) as fake:
        assert fake_model(fake, "openai/fake-model").complete(MESSAGES).cost_usd is None


# --- environment checks -----------------------------------------------------------------------------------------


def test_check_environment_names_the_missing_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ModelConfigError, match="ANTHROPIC_API_KEY"):
        LiteLLMModel("anthropic/claude-3-5-sonnet-20240620").check_environment()


def test_check_environment_passes_with_key_in_env_or_given_or_local_server(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    LiteLLMModel("ollama/llama3").check_environment()  # litellm's default ollama server is localhost
    LiteLLMModel("anthropic/claude-3-5-sonnet-20240620", api_key="sk-given").check_environment()
    LiteLLMModel("anthropic/claude-3-5-sonnet-20240620", api_base="http://localhost:8000").check_environment()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env")
    LiteLLMModel("anthropic/claude-3-5-sonnet-20240620").check_environment()


def test_check_environment_insists_on_keys_for_remote_api_base(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        LiteLLMModel("openai/gpt-4o-mini", api_base="https://llm.example.com/v1").check_environment()


def test_model_without_provider_is_a_config_error():
    with pytest.raises(ModelConfigError, match="provider/model"):
        LiteLLMModel("fake-model", api_key="k").check_environment()


# --- scripted models and make_model -----------------------------------------------------------------------------


def test_scripted_model_replays_in_order_then_is_exhausted(tmp_path):
    model = ScriptedModel(write_script(tmp_path / "run.json", ["alpha answer", "beta"]))
    first = model.complete(MESSAGES)
    assert first == Reply(
        text="alpha answer",
        prompt_tokens=sum(len(m["content"]) for m in MESSAGES) // 4,
        completion_tokens=len("alpha answer") // 4,
        cost_usd=0.0,
        model="scripted:run.json",
        seconds=0.0,
    )
    assert model.complete([{"role": "user", "content": "anything"}]).text == "beta"
    with pytest.raises(ScriptExhausted):
        model.complete(MESSAGES)


@pytest.mark.parametrize(
    "content, error",
    [
        (None, "not found"),
        ("{not json", "not valid JSON"),
        ('{"responses": "just one"}', "must hold"),
        ('{"responses": ["ok", 3]}', "must hold"),
        ('["a list"]', "must hold"),
    ],
)
def test_scripted_model_rejects_bad_files(tmp_path, content, error):
    path = tmp_path / "script.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelConfigError, match=error) as caught:
        ScriptedModel(path)
    assert str(path) in str(caught.value)


def test_make_model_picks_the_implementation(tmp_path):
    script = write_script(tmp_path / "s.json", ["x"])
    scripted = make_model(f"scripted:{script}")
    assert isinstance(scripted, ScriptedModel) and scripted.name == "scripted:s.json"

    real = make_model("openai/gpt-4o-mini", api_base="http://127.0.0.1:1/v1", api_key="k", timeout=5, num_retries=1)
    assert isinstance(real, LiteLLMModel)
    assert (real.name, real.api_base, real.api_key, real.timeout, real.num_retries) == (
        "openai/gpt-4o-mini",
        "http://127.0.0.1:1/v1",
        "k",
        5,
        1,
    )


# --- budget -----------------------------------------------------------------------------------------------------


def test_budget_limits_calls():
    budget = Budget(max_calls=2)
    for _ in range(2):
        budget.check()
        budget.charge(reply(0.0))
    with pytest.raises(BudgetExceeded, match="2 of 2 calls"):
        budget.check()


def test_budget_limits_spending():
    budget = Budget(max_usd=1.0)
    budget.charge(reply(0.6))
    budget.check()
    budget.charge(reply(0.6))
    assert budget.spent_usd == pytest.approx(1.2)
    with pytest.raises(BudgetExceeded, match="cost budget"):
        budget.check()


def test_budget_notes_unknown_costs_without_limits():
    budget = Budget()
    for _ in range(100):
        budget.charge(reply(None))
    budget.check()
    assert (budget.calls, budget.spent_usd, budget.cost_unknown) == (100, 0.0, True)


# --- trajectory -------------------------------------------------------------------------------------------------


def test_trajectory_file_is_valid_json_after_each_record_and_reloads(tmp_path):
    path = tmp_path / "runs" / "trajectory.json"
    trajectory = Trajectory(path)
    for i in range(3):
        trajectory.record(purpose="patch", index=i, where=Path("/repo/mod.py"))
        on_disk = json.loads(path.read_text())
        assert on_disk == trajectory.records
        assert [r["index"] for r in on_disk] == list(range(i + 1))
    assert on_disk[0]["where"] == "/repo/mod.py"
    assert "timestamp" in on_disk[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["trajectory.json"]  # no temp files left

    reloaded = Trajectory(path)
    assert reloaded.records == trajectory.records
    reloaded.record(purpose="more")
    assert len(json.loads(path.read_text())) == 4


def test_trajectory_records_cannot_be_changed_from_outside(tmp_path):
    trajectory = Trajectory(tmp_path / "t.json")
    trajectory.record(purpose="a")
    trajectory.records.clear()
    assert len(trajectory.records) == 1


# --- session ----------------------------------------------------------------------------------------------------


def test_session_charges_and_records_successful_calls(tmp_path):
    model = ScriptedModel(write_script(tmp_path / "s.json", ["patch one"]))
    session = Session(model, Budget(max_calls=5), Trajectory(tmp_path / "t.json"))

    reply = session.ask(MESSAGES, purpose="propose", meta={"hotspot": "f"})

    assert reply.text == "patch one"
    assert session.budget.calls == 1
    [record] = json.loads((tmp_path / "t.json").read_text())
    assert record["purpose"] == "propose"
    assert record["messages"] == MESSAGES
    assert record["reply"] == "patch one"
    assert record["meta"] == {"hotspot": "f"}
    assert record["cost_usd"] == 0.0
    assert record["prompt_tokens"] == reply.prompt_tokens
    assert record["model"] == "scripted:s.json"


def test_session_records_failures_and_reraises(tmp_path):
    session = Session(ScriptedModel(write_script(tmp_path / "s.json", [])), Budget(), Trajectory(tmp_path / "t.json"))
    with pytest.raises(ScriptExhausted):
        session.ask(MESSAGES, purpose="propose")
    [record] = json.loads((tmp_path / "t.json").read_text())
    assert record["error"].startswith("ScriptExhausted")
    assert "reply" not in record
    assert session.budget.calls == 0


def test_session_records_http_failures(tmp_path):
    with serve([]) as fake:
        fake.fail_next(1, 401)
        session = Session(fake_model(fake), Budget(), Trajectory(tmp_path / "t.json"))
        with pytest.raises(ModelConfigError):
            session.ask(MESSAGES, purpose="propose")
    [record] = session.trajectory.records
    assert "ModelConfigError" in record["error"] and "401" in record["error"]


def test_session_refuses_calls_over_budget_without_calling_the_model(tmp_path):
    model = ScriptedModel(write_script(tmp_path / "s.json", ["a", "b"]))
    session = Session(model, Budget(max_calls=1), Trajectory(tmp_path / "t.json"))
    session.ask(MESSAGES, purpose="first")
    with pytest.raises(BudgetExceeded):
        session.ask(MESSAGES, purpose="second")
    assert len(session.trajectory.records) == 1
    assert model.complete(MESSAGES).text == "b"  # the refused call consumed nothing


def test_litellm_never_touches_the_network():
    """Whatever path loads litellm first (here: counting a prompt's tokens for a real model's run), it reads its price
    table from disk: no name look-up, no connection, seen by an audit hook in a fresh process."""
    probe = textwrap.dedent("""
        import sys
        events = []
        network = ("socket.getaddrinfo", "socket.gethostbyname", "socket.connect", "urllib.Request")
        sys.addaudithook(lambda event, args: events.append(event) if event in network else None)
        from perfagent.model.llm import count_tokens
        count_tokens("openai/gpt-4o", [{"role": "user", "content": "hello"}])
        print(sorted(set(events)), "litellm" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True", result.stdout + result.stderr


def test_an_offline_models_prompt_is_counted_without_loading_litellm():
    """A scripted or oracle run counts its prompts as its replies do (4 characters a token), without importing
    litellm (seconds, more on a loaded machine: every scripted run of the suite paid it)."""
    probe = textwrap.dedent("""
        import sys
        from perfagent.model.llm import count_tokens
        print(count_tokens("scripted:s.json", [{"role": "user", "content": "x" * 400}]),
              count_tokens("oracle:p.diff", [{"role": "system", "content": "y" * 40}]), "litellm" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["100", "10", "False"], result.stdout + result.stderr


@pytest.mark.parametrize("honour_n", [True, False])
def test_several_replies_in_one_request_or_in_parallel_where_the_provider_gives_one(honour_n):
    with serve(["first", "second", "third"], honour_n=honour_n) as fake:
        replies = fake_model(fake).complete_many(MESSAGES, 3)
        requests = [r.body for r in fake.requests]
    assert sorted(r.text for r in replies) == ["first", "second", "third"]
    assert requests[0]["n"] == 3 and len(requests) == (1 if honour_n else 3)
    assert all("n" not in body for body in requests[1:])  # the missing choices: single requests
