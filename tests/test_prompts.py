"""The optimize prompt: what the model is told about the hot functions, within the token budget."""
import pytest

from perfagent.localize.hotspots import Hotspot, Profile
from perfagent.model.llm import count_tokens
from perfagent.model.prompting import Attempt, Target, optimize_messages
from perfagent.localize.source import SourceIndex
from perfagent.measure.workload import Workload

MODEL = "openai/gpt-4o"
BODY = "\n".join(f"    total += values[{i}] * {i}  # step {i}" for i in range(300))
FILES = {
    "pkg/__init__.py": "",
    "pkg/calc.py": f"import math\n\nLIMIT = 10\n\n\ndef weigh(values):\n    total = 0\n{BODY}\n"
                   f"    total += sum(sorted(values))  # the hot line\n    return total\n\n\n"
                   f"def run(values):\n    return weigh(values) + math.floor(LIMIT)\n",
    "bench.py": "from pkg.calc import run\n\n\ndef setup():\n    pass\n\n\ndef workload():\n"
                "    return run(list(range(1000)))\n",
}


@pytest.fixture
def repo(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def _profile(repo):
    index = SourceIndex(repo)
    weigh, run = (next(s for s in index.functions("pkg/calc.py") if s.qualname == q) for q in ("weigh", "run"))
    hot = weigh.end - 1
    spots = [
        Hotspot(weigh.key, weigh.file, weigh.qualname, weigh.start, weigh.end, 0.7, 0.7, depth=1.0, score=0.8,
                lines=[(hot, 0.6), (weigh.start + 10, 0.05)], callers=[(run.key, 0.7)]),
        Hotspot(run.key, run.file, run.qualname, run.start, run.end, 0.05, 0.95, depth=0.0, score=1.0,
                lines=[(run.end, 0.9)], callees=[(weigh.key, 0.7)]),
    ]
    return Profile("py-spy", 500, 3.0, spots), hot


def _user(messages):
    return messages[1]["content"]


def test_hot_function_with_its_callers_callees_and_lines(repo):
    profile, hot = _profile(repo)
    messages = optimize_messages(Target(Workload.parse("bench.py", repo), 0.012, profile, top_k=2), SourceIndex(repo),
                                 [], prompt_tokens=20000, model=MODEL)
    user = _user(messages)
    assert "Called on the hot path from: `pkg.calc:run` (70.0%)" in user
    assert "Calls: `pkg.calc:weigh` (70.0%)" in user
    assert f"- line {hot} (60.0%): `total += sum(sorted(values))  # the hot line`" in user
    assert "# step 0\n" in user and "# step 299\n" in user and "shortened" not in user  # whole function
    assert "LIMIT = 10" in user and "def workload():" in user  # module header and workload
    assert count_tokens(MODEL, messages) <= 20000


def test_prompt_stays_within_the_token_budget(repo):
    profile, hot = _profile(repo)
    detail = " ".join(map(str, range(80)))  # the loop passes at most 300 characters of detail
    attempts = [Attempt(f"attempt {i}", ["pkg/calc.py"], "not faster", detail) for i in range(30)]
    target, index = Target(Workload.parse("bench.py", repo), 0.012, profile, top_k=2), SourceIndex(repo)
    full = count_tokens(MODEL, optimize_messages(target, index, [], prompt_tokens=50000, model=MODEL))
    assert full > 3000
    messages = optimize_messages(target, index, [], prompt_tokens=3000, model=MODEL)
    user = _user(messages)
    assert count_tokens(MODEL, messages) <= 3000
    weigh = user.split("### `weigh`")[1].split("### `run`")[0]
    assert "    total += sum(sorted(values))  # the hot line\n    return total\n```" in weigh  # its neighbourhood stays
    assert "(shortened to fit the prompt: lines " in user and "# step 0\n" not in user
    # long rejection details: the oldest attempts go first
    messages = optimize_messages(target, index, attempts, prompt_tokens=3000, model=MODEL)
    user = _user(messages)
    assert count_tokens(MODEL, messages) <= 3000
    assert "attempt 29" in user and "attempt 26" not in user and "**not faster**: 0 1 2" in user
