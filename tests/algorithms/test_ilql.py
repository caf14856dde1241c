"""ILQL: its losses against hand values (done masking, both sides of the expectile, CQL,
AWAC), value-guided logits, the token transitions across turns, the guide inside generation,
the heads' save/load and `archer eval --decoding ilql`, and learnability against BC."""

import json
import math

import pytest
import torch
import user_envs  # noqa: F401
from conftest import OFFLINE_THRICE

from archer import loop
from archer.algorithms.ilql import (
    HEADS,
    Episode,
    ILQLHeads,
    ValueGuide,
    expectile_loss,
    guided_logits,
    ilql_loss,
    load_guide,
    load_heads,
    make_targets,
    polyak_update,
    save_heads,
    step_rows,
    token_transitions,
)
from archer.buffer.dataset import DatasetError
from archer.config import load_config
from archer.errors import CheckpointError
from archer.models.policy import Policy, Sampling
from archer.models.tiny import build_tiny_policy, train_tokenizer

QUIET = {"progress": False, "log": lambda *_: None}


def test_expectile_weights_both_sides():
    # tau 0.7: u = 2 -> 0.7 * 4 = 2.8; u = -2 -> 0.3 * 4 = 1.2; u = 0 -> 0
    u = torch.tensor([2.0, -2.0, 0.0])
    assert expectile_loss(u, 0.7).tolist() == pytest.approx([2.8, 1.2, 0.0])
    # tau 0.5 is half the squared error on both sides
    assert expectile_loss(u, 0.5).tolist() == pytest.approx([2.0, 2.0, 0.0])


def _example():
    # two tokens, vocabulary of 3; token 1 ends a terminated episode (done), and its next_v
    # of 3.0 must not reach its target
    return dict(
        q1_all=torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], requires_grad=True),
        q2_all=torch.tensor([[0.5, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True),
        tq1_all=torch.tensor([[0.8, 0.0, 0.0], [0.0, 1.5, 0.0]]),
        tq2_all=torch.tensor([[0.6, 0.0, 0.0], [0.0, 1.2, 0.0]]),
        v=torch.tensor([0.5, 1.4], requires_grad=True), next_v=torch.tensor([1.0, 3.0]),
        actions=torch.tensor([0, 1]), rewards=torch.tensor([0.0, 1.0]),
        dones=torch.tensor([0.0, 1.0]), logp=torch.tensor([-0.5, -1.0], requires_grad=True),
        n=2.0)


def test_ilql_loss_hand_values():
    # Q(s,a): q1 = [1, 2], q2 = [0.5, 1]; min Q̄ = [min(0.8, 0.6), min(1.5, 1.2)] = [0.6, 1.2]
    # y = r + 0.9 (1 - done) next_v = [0 + 0.9 * 1.0, 1 + 0] = [0.9, 1.0]   (done masks 3.0)
    # Q loss = ((1-0.9)^2 + (0.5-0.9)^2 + (2-1)^2 + (1-1)^2) / 2 = (0.01+0.16+1+0)/2 = 0.585
    # u = min Q̄ - V = [0.1, -0.2] -> expectile 0.7: (0.7*0.01 + 0.3*0.04) / 2 = 0.0095
    # CQL: lse([1,0,0]) - 1 = log(e+2) - 1 = 0.551445; lse([0,2,0]) - 2 = log(e^2+2) - 2
    #      = 0.239543; lse([.5,0,0]) - .5 = log(e^.5+2) - .5 = 0.794377; lse([0,1,0]) - 1
    #      = 0.551445 -> sum 2.136810 / 2 = 1.068405
    # AWAC (beta 0, plain NLL): -(-0.5 - 1.0) / 2 = 0.75
    # total = 0.585 + 0.0095 + 0.1 * 1.068405 + 1.0 * 0.75 = 1.451341
    ex = _example()
    loss, m = ilql_loss(**ex, gamma=0.9, expectile=0.7, cql_weight=0.1, awac_weight=1.0)
    cql = (math.log(math.e + 2) - 1 + math.log(math.e ** 2 + 2) - 2
           + math.log(math.exp(0.5) + 2) - 0.5 + math.log(math.e + 2) - 1) / 2
    assert m["ilql/q_loss"] == pytest.approx(0.585)
    assert m["ilql/v_loss"] == pytest.approx(0.0095)
    assert m["ilql/cql"] == pytest.approx(cql) == pytest.approx(1.068405, abs=1e-6)
    assert m["ilql/awac"] == pytest.approx(0.75)
    assert loss.item() == pytest.approx(0.585 + 0.0095 + 0.1 * cql + 0.75)
    loss.backward()
    # dQ loss/dq1 = 2 (q1 - y) / n at the taken action, plus the CQL softmax terms: at token 1
    # (done) q1 = 2 is pulled toward y = 1, not toward 1 + 0.9 * 3
    soft = math.exp(2) / (math.exp(2) + 2)
    assert ex["q1_all"].grad[1, 1].item() == pytest.approx(2 * (2 - 1) / 2 + 0.1 * (soft - 1) / 2)
    # the V gradient is the expectile's: -2 w u / n with w = 0.7 (u > 0), 0.3 (u < 0)
    assert ex["v"].grad.tolist() == pytest.approx([-2 * 0.7 * 0.1 / 2, -2 * 0.3 * -0.2 / 2])


def test_awac_weights_tokens_by_their_advantage():
    # awac_beta 1: w = exp(min Q̄ - V) = [exp(0.1), exp(-0.2)] = [1.105171, 0.818731]
    # AWAC = -(1.105171 * -0.5 + 0.818731 * -1.0) / 2 = 0.685951; cap 1.0: w = [1, 0.818731]
    ex = _example()
    _, m = ilql_loss(**ex, gamma=0.9, expectile=0.7, cql_weight=0.0, awac_weight=1.0,
                     awac_beta=1.0)
    assert m["ilql/awac"] == pytest.approx((math.exp(0.1) * 0.5 + math.exp(-0.2)) / 2)
    _, m = ilql_loss(**_example(), gamma=0.9, expectile=0.7, cql_weight=0.0, awac_weight=1.0,
                     awac_beta=1.0, awac_max_weight=1.0)
    assert m["ilql/awac"] == pytest.approx((0.5 + math.exp(-0.2)) / 2)


def test_guided_logits_hand_values():
    # uniform logits over 4 tokens: log pi = -log 4 = -1.386294 each
    # min(Q̄1, Q̄2) = [0.5, 0, 2, -1]; V = 0.5 -> A = [0, -0.5, 1.5, -1.5]; beta 2:
    # [-1.386294, -2.386294, 1.613706, -4.386294]; top-2 keeps tokens 2 and 0
    out = guided_logits(torch.zeros(1, 4), torch.tensor([[1.0, 0.0, 2.0, -1.0]]),
                        torch.tensor([[0.5, 0.5, 3.0, -1.0]]), torch.tensor([0.5]), 2.0, 2)
    lp = -math.log(4)
    assert out[0, 0].item() == pytest.approx(lp) and out[0, 2].item() == pytest.approx(lp + 3)
    assert out[0, 1].item() == float("-inf") and out[0, 3].item() == float("-inf")


def test_token_transitions_skip_environment_text_and_mask_done():
    # an episode of two turns (2 and 1 tokens), terminated; then one of a single turn of 2
    # tokens, truncated, bootstrapped from row 3 (its final observation, one dummy token)
    succ, r, d, real = token_transitions([2, 1, 2, 1], [0.5, 1.0, -1.0, 0.0], [1, -1, 3, -1],
                                         [False, True, False, False], [True, True, True, False])
    # tokens: row 0 -> 0, 1; row 1 -> 2; row 2 -> 3, 4; row 3 -> 5
    assert succ.tolist() == [1, 2, -1, 4, 5, -1]  # row 0's last token -> row 1's first
    assert r.tolist() == [0.0, 0.5, 1.0, 0.0, -1.0, 0.0]  # each turn's reward on its last token
    assert d.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # only the terminated end is done
    assert real.tolist() == [True] * 5 + [False]  # the bootstrap row is never a target


@pytest.fixture(scope="module")
def policy():
    corpus = ["Answer yes or no.\n", "yes\n", "no\n"] * 20
    tok = train_tokenizer(corpus, 300)
    return Policy(build_tiny_policy(tok, "tiny", 64, seed=0), tok, max_context_tokens=64,
                  reserve=4)


def test_step_rows_bootstrap_a_truncated_episode_from_its_final_observation(policy):
    yes = policy.action_ids_for("yes")
    eps = [Episode([("a\n", yes, 0.0), ("a\nyes\n", yes, 1.0)], True, "a\nyes\nyes\n"),
           Episode([("b\n", yes, -1.0)], False, "b\nyes\n")]
    rows = step_rows(policy, eps)
    assert len(rows.batch) == 4  # three turns and one bootstrap row
    assert rows.next_row == [1, -1, 3, -1] and rows.terminal == [False, True, False, False]
    assert rows.real == [True, True, True, False] and rows.reward == [0.0, 1.0, -1.0, 0.0]
    eos = policy.tokenizer.eos_token_id
    assert rows.batch.input_ids[3, -1].item() == eos  # the final observation, then eos


def test_a_step_in_micro_batches_of_whole_episodes_adds_up_to_one_micro_batch(policy):
    """A token's successor may be the next turn's first state, so a step is cut into parts of
    whole episodes (bootstrap rows with their episode), each adding its tokens' terms over the
    step's token count: the parts' losses and metrics add up to the one-part step's."""
    from archer.algorithms.ilql import ILQL
    from archer.algorithms.updates import group_parts
    from archer.config import DeepSpeedConfig, ILQLConfig
    from archer.distributed.engine import build_actor_engine
    from archer.models.policy import attach_head

    tok = policy.tokenizer
    own = Policy(build_tiny_policy(tok, "tiny", 64, seed=0), tok, max_context_tokens=64,
                 reserve=4)
    lm_head = own.model.get_output_embeddings().weight
    torch.manual_seed(0)
    heads = ILQLHeads(int(lm_head.shape[1]), int(lm_head.shape[0]))
    attach_head(own.model, HEADS, heads)
    engine = build_actor_engine(own.model, DeepSpeedConfig(enabled=False, micro_batch_size=3),
                                lr=1e-3, batch_size=3, grad_clip=1.0)
    yes, no = own.action_ids_for("yes"), own.action_ids_for("no")
    eps = [Episode([("a\n", yes, 0.0), ("a\nyes\n", no, 1.0)], True, "a\nyes\nno\n"),
           Episode([("b\n", yes, -1.0)], False, "b\nyes\n"),  # truncated: a bootstrap row
           Episode([("c\n", no, 0.5)], True, "c\nno\n")]
    algo = ILQL(ILQLConfig(), own, engine, make_targets(heads), eps, epochs=1, seed=0)
    step = step_rows(own, eps)
    assert step.episode == [0, 0, 1, 2, 1]  # the bootstrap row (last) is episode 1's
    assert step.target_tokens() == 2 * len(yes) + 2 * len(no)  # the 4 logged turns
    length = step.batch.attention_mask.sum(-1).tolist()
    one, two = (group_parts(step.batch, step.episode, k) for k in (1, 2))  # episodes [0], [1, 2]
    assert one == [sorted(range(5), key=lambda r: length[r])]
    assert [sorted(p) for p in two] == [[0, 1], [2, 3, 4]]
    assert all(length[a] <= length[b] for p in two for a, b in zip(p, p[1:], strict=False))
    loss = algo._loss(step)

    def run(parts):
        total, sums = 0.0, {}
        for idx in parts:
            sub = step.batch.select(idx)
            value, m = loss(own.score(sub, hidden=True), sub, idx)
            total += value.item()
            sums = {k: sums.get(k, 0.0) + v for k, v in m.items()}
        return total, sums

    (whole, wm), (split, sm) = run(one), run(two)
    assert split == pytest.approx(whole, rel=1e-5)
    for key in wm:
        assert sm[key] == pytest.approx(wm[key], rel=1e-5, abs=1e-7), key


def test_guide_with_zero_beta_and_full_top_k_samples_the_policy(policy):
    """log_softmax is shift-invariant: with beta 0 and every token kept, guided sampling draws
    exactly the policy's tokens for the same seeds; a guide whose Q favours one token
    makes greedy decoding pick it."""
    width = policy.model.get_output_embeddings().weight.shape
    heads = ILQLHeads(int(width[1]), int(width[0]))
    targets = make_targets(heads)
    obs = ["Answer yes or no.\n"] * 3
    s = Sampling(max_new_tokens=4)
    plain = policy.generate(obs, s, seeds=[1, 2, 3])
    guided = policy.generate(obs, s, seeds=[1, 2, 3],
                             guide=ValueGuide(heads, targets, 0.0, int(width[0])))
    assert plain.action_ids == guided.action_ids
    flat = [x for row in plain.logprobs for x in row]
    assert flat == pytest.approx([x for row in guided.logprobs for x in row], abs=1e-5)
    yes = policy.action_ids_for("yes")[0]
    with torch.no_grad():
        for q in (targets["q1"], targets["q2"]):
            q[-1].weight.zero_()
            q[-1].bias.zero_()
            q[-1].bias[yes] = 100.0
    greedy = policy.generate(obs, Sampling(max_new_tokens=4, temperature=0.0),
                             guide=ValueGuide(heads, targets, 1.0, 5))
    assert all(ids == [yes] * 4 for ids in greedy.action_ids)


def test_guided_sampling_reads_every_row_of_a_prefill_in_parts(policy, monkeypatch):
    """The guide reads the hidden state of each prefill forward; a prefill in row parts
    (`PREFILL_ROWS`) hands it the rows of all parts, in order, so guided samples are those of
    one prefill."""
    import archer.models.policy as policy_module

    width = policy.model.get_output_embeddings().weight.shape
    torch.manual_seed(0)
    heads = ILQLHeads(int(width[1]), int(width[0]))
    targets = make_targets(heads)
    obs = [f"Question {i}:\n" + "Is it red? No.\n" * (i % 4) for i in range(7)]
    s = Sampling(max_new_tokens=4)
    guide = ValueGuide(heads, targets, 4.0, 20)
    monkeypatch.setattr(policy_module, "PREFILL_ROWS", 2)
    parts = policy.generate(obs, s, seeds=list(range(7)), guide=guide)
    monkeypatch.setattr(policy_module, "PREFILL_ROWS", 64)
    whole = policy.generate(obs, s, seeds=list(range(7)), guide=guide)
    assert parts.action_ids == whole.action_ids
    for a, b in zip(parts.logprobs, whole.logprobs, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_guided_rows_that_share_a_prompt_read_its_one_prefill(policy):
    """A prompt repeated in a chunk is prefilled once; the guide reads that forward's hidden
    state for each of its rows, so every guided row equals that row sampled alone."""
    width = policy.model.get_output_embeddings().weight.shape
    torch.manual_seed(0)
    heads = ILQLHeads(int(width[1]), int(width[0]))
    guide = ValueGuide(heads, make_targets(heads), 4.0, 20)
    obs = [f"Question {i}:\n" + "Is it red? No.\n" * i for i in (2, 0, 2, 1, 2)]
    s = Sampling(max_new_tokens=4)
    together = policy.generate(obs, s, seeds=list(range(5)), guide=guide)
    for i, o in enumerate(obs):
        alone = policy.generate([o], s, seeds=[i], guide=guide)
        assert together.action_ids[i] == alone.action_ids[0]
        assert together.logprobs[i] == pytest.approx(alone.logprobs[0], abs=1e-5)


def test_a_collector_acts_through_the_guide(policy):
    """Rollout workers and the in-process collector share `rollout_chunk`: a guide pushed with
    `set_chooser` decides their utterances (here one whose Q favours the "yes" token at every
    step makes every sampled id that token), and the stored ids are the guided ones."""
    from archer.rollout.collector import InProcessCollector

    width = policy.model.get_output_embeddings().weight.shape
    heads = ILQLHeads(int(width[1]), int(width[0]))
    targets = make_targets(heads)
    yes = policy.action_ids_for("yes")[0]
    with torch.no_grad():
        for q in (targets["q1"], targets["q2"]):
            q[-1].weight.zero_()
            q[-1].bias.fill_(-100.0)
            q[-1].bias[yes] = 100.0 if q is targets["q1"] else 101.0
    cfg = load_config(overrides=["env.id=user_envs:SayYes-v0", "model.max_context_tokens=64",
                                 "generation.max_new_tokens=4", "rollout.envs_per_worker=4"])
    collector = InProcessCollector(cfg, policy)
    collector.set_chooser(ValueGuide(heads, targets, 1.0, 5), 1)
    episodes = collector.collect(["0", "1", "2", "3"], [1, 2, 3, 4])
    collector.close()
    assert [t.turns[0].action_ids for t in episodes] == [[yes] * 4] * 4  # max_new_tokens ids
    assert [t.turns[0].action for t in episodes] == ["yes" * 4] * 4


def test_heads_save_and_load_in_hf_format(tmp_path, policy):
    heads = ILQLHeads(8, 11)
    targets = make_targets(heads)
    polyak_update(targets, ILQLHeads(8, 11), 0.5)  # the targets differ from the heads
    save_heads(tmp_path / HEADS, heads, targets, policy.fingerprint)
    config = json.loads((tmp_path / HEADS / "config.json").read_text())
    assert config["vocab_size"] == 11 and (tmp_path / HEADS / "model.safetensors").is_file()
    back, back_targets, fingerprint = load_heads(tmp_path / HEADS)
    assert fingerprint == policy.fingerprint
    for a, b in zip([*heads.state_dict().values(), *targets.state_dict().values()],
                    [*back.state_dict().values(), *back_targets.state_dict().values()],
                    strict=True):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="cannot load ILQL heads"):
        load_heads(tmp_path / "missing")
    (tmp_path / HEADS / "config.json").write_text(json.dumps({**config, "tokenizer": "other"}))
    with pytest.raises(CheckpointError, match="trained with tokenizer other"):
        load_guide(tmp_path / HEADS, 1.0, 5, policy)


def test_polyak_moves_targets_by_the_rate():
    heads, other = ILQLHeads(2, 3), ILQLHeads(2, 3)
    targets = make_targets(other)
    before = targets["q1"][0].weight.clone()
    polyak_update(targets, heads, 0.25)
    assert torch.allclose(targets["q1"][0].weight, 0.75 * before + 0.25 * heads.q1[0].weight)


def _cfg(tmp, data, *extra):
    return load_config(overrides=[*OFFLINE_THRICE, "algo=ilql", f"data.path={data}",
                                  f"output_dir={tmp / 'ilql'}", *extra])


def test_ilql_beats_bc_on_the_same_logged_data(tmp_path, coin_thrice, capsys):
    """From a tiny model on the coin-flip data (BC on it: about 1/8), ILQL's Q must learn that
    only yes-yes-yes pays: value-guided decoding then says yes, the LM head alone stays BC.
    Then `archer eval --decoding ilql` decodes the saved policy with its heads.

    Sampled guided returns vary widely with the seed (12 iterations, seeds 0-3 on one
    machine: 0.48, 0.66, 0.22, 0.36) and with float rounding, so three seeds are run: each
    beats BC and decodes greedily to the reward, and their mean beats BC by 0.2."""
    from archer.cli import main

    data, _, bc = coin_thrice
    returns = []
    for seed in (0, 1, 2):
        run = loop.run(_cfg(tmp_path / f"s{seed}", data, "train.iterations=12",
                            "ilql.batch_size=4", "ilql.polyak=0.05", "ilql.beta=32",
                            f"seed={seed}"), **QUIET)
        returns.append(run["after"]["eval/return_sample"])
        print("bc", bc, "seed", seed, "ilql guided", returns[-1], run["after"])
        assert returns[-1] > bc and run["after"]["eval/return_greedy"] == 1.0, (bc, returns)
    assert sum(returns) / 3 > bc + 0.2, (bc, returns)
    guided, last_run = returns[-1], tmp_path / "s2"  # `archer eval` decodes seed 2's policy
    policy_dir = last_run / "ilql" / "checkpoint" / "policy"
    common = ["eval", "--policy", str(policy_dir), "--env", "user_envs:SayYesThrice-v0",
              "--episodes", "64", "--json", "model.max_context_tokens=64",
              "generation.max_new_tokens=4"]
    capsys.readouterr()
    assert main([*common, "--decoding", "sample"]) == 0
    lm_head = json.loads(capsys.readouterr().out)["return_mean"]
    assert main([*common, "--decoding", "ilql", "--beta", "32"]) == 0
    out = json.loads(capsys.readouterr().out)
    print("lm head", lm_head, "guided", out["return_mean"])
    assert lm_head < bc + 0.2  # the LM head is trained by the NLL: still about BC
    assert out["return_mean"] == pytest.approx(guided, abs=0.2) and out["ilql_beta"] == 32.0


def test_ilql_refuses_token_ids_of_another_tokenizer_naming_the_line(tmp_path, coin_thrice):
    data, _, _ = coin_thrice
    lines = data.read_text().splitlines()[:3]
    bad = json.loads(lines[1])
    bad["tokenizer"] = "0123456789abcdef"
    for turn in bad["turns"]:
        turn["action_ids"] = [1, 2]
    path = tmp_path / "other.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n")
    with pytest.raises(DatasetError, match=r"other\.jsonl.* 2.*tokenizer 0123456789abcdef"):
        loop.run(_cfg(tmp_path, path, "train.iterations=1"), **QUIET)
