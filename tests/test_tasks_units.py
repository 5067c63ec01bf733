"""Unit tests of the task modules (trainer/training/tasks/{text_diffusion,regression,discrete_diffusion}.py):
each builds, trains a few steps, samples, and refuses bad options. Tiny models, a few seconds."""

import pytest
import torch

from trainer.config import CurriculumConfig, from_dict
from trainer.config.curriculum import curriculum_difficulty
from trainer.errors import ConfigError
from trainer.training.tasks import get_task_class
from trainer.training.tasks.discrete_diffusion import AMINO_ACIDS, make_sequences
from trainer.training.tasks.regression import make_series
from trainer.training.tasks.text_diffusion import Vocabulary, punctuation_share

TINY = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16}, "batch_size": 4, "max_steps": 10, "warmup_steps": 1}
CASES = {
    "text_diffusion": {"block_size": 16, "sample_length": 20, "options": {"sample_steps": 3}},
    "regression": {"block_size": 12, "options": {"length": 400, "horizon": 4, "channels": 2}},
    "discrete_diffusion": {
        "block_size": 16,
        "sample_length": 16,
        "options": {"n_sequences": 40, "sample_steps": 4},
        "curriculum": {"ramp": "linear", "preschool_steps": 5},
    },
}


def make(task: str, **extra):
    data = {"task": task, **TINY, **CASES[task], **extra}
    cfg = from_dict(data)
    return get_task_class(task)(cfg, torch.device("cpu"))


def train_steps(task, steps: int = 3):
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for step in range(steps):
        out = task.compute_loss(model, task.get_batch("train", gen), step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return model, losses, out


@pytest.mark.parametrize("name", list(CASES))
def test_task_trains_a_few_steps_and_samples(name):
    task = make(name)
    model, losses, out = train_steps(task)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert out.loss.dim() == 0
    model.eval()
    with torch.no_grad():
        val = task.compute_loss(model, task.get_batch("val", torch.Generator().manual_seed(1)), 3)
        sample = task.sample(model, 3, torch.Generator().manual_seed(2))
    assert torch.isfinite(val.loss)
    if name == "regression":
        assert len(sample["pred"]) == len(sample["target"]) == 4
        assert task.units_per_batch() == 4 and task.unit == "samples"
    else:
        assert isinstance(sample["text"], str) and len(sample["text"]) >= 16


@pytest.mark.parametrize("name", ["text_diffusion", "regression"])
def test_probes_report_prediction_and_target_spread(name):
    _, _, out = train_steps(make(name), steps=1)
    assert set(out.probes) == {"out/pred_std", "out/target_std"}
    assert out.probes["out/target_std"] > 0.5  # embeddings init std 1; series normalised to std ~1


def test_text_diffusion_logs_both_loss_parts_and_decays_the_rounding_weight():
    task = make("text_diffusion", options={"rounding_weight": 0.5, "rounding_weight_final": 0.05})
    _, _, out = train_steps(task, steps=1)
    assert set(out.parts) == {"diffusion", "rounding"}
    assert task.rounding_weight(0) == pytest.approx(0.5)
    assert task.rounding_weight(5) == pytest.approx(0.275)
    assert task.rounding_weight(10) == pytest.approx(0.05)
    assert task.rounding_weight(50) == pytest.approx(0.05)


def test_word_vocabulary_makes_punctuation_the_most_frequent_tokens():
    vocab = Vocabulary("ROMEO:\nWhat, ho! What, ho:\nJULIET:\nAy, me.", "word", 16)
    counts = torch.bincount(vocab.ids, minlength=len(vocab))
    top = vocab.tokens[int(counts.argmax())]
    assert top in (",", ":")
    assert vocab.decode(vocab.ids[:4].tolist()) == "ROMEO: What,"


def test_punctuation_share_ignores_whitespace():
    assert punctuation_share(":::,:,, :\n,,") == 1.0
    assert punctuation_share("to be, or not") == pytest.approx(1 / 10)
    assert punctuation_share("   ") == 0.0


def test_dead_branch_parameters_get_exactly_zero_gradient_while_the_rest_learn():
    task = make("regression", options={"length": 400, "horizon": 4, "channels": 2, "dead_branch": True})
    model = task.build_model()
    out = task.compute_loss(model, task.get_batch("train", torch.Generator().manual_seed(0)), 0)
    out.loss.backward()
    dead = {n: p.grad for n, p in model.named_parameters() if n.startswith("celestial_")}
    assert len(dead) == 4
    assert all(g is not None and float(g.abs().max()) == 0.0 for g in dead.values())
    assert model.projection.weight.grad.norm() > 0
    assert model.in_proj.weight.grad.norm() > 0


def test_train_noise_applies_in_training_only():
    task = make("regression", options={"length": 400, "horizon": 4, "channels": 2, "train_noise": 2.0})
    model = task.build_model()
    batch = task.get_batch("val", torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        clean = [task.compute_loss(model, batch, 0).loss.item() for _ in range(2)]
        model.train()
        noisy = task.compute_loss(model, batch, 0).loss.item()
    assert clean[0] == clean[1]
    assert noisy > clean[0] + 1.0  # target noise of std 2 adds ~4 to the MSE


def test_synthetic_data_is_determined_by_the_seed():
    a, b, c = make_series(3, 500, 24, 0.3, 1), make_series(3, 500, 24, 0.3, 1), make_series(3, 500, 24, 0.3, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    s1, motifs1 = make_sequences(30, 24, 4, 7)
    s2, motifs2 = make_sequences(30, 24, 4, 7)
    assert torch.equal(s1, s2) and motifs1 == motifs2
    text = ["".join(AMINO_ACIDS[i] for i in row) for row in s1.tolist()]
    assert all(any(m in line for m in motifs1) for line in text)  # every sequence carries a motif


def test_regression_targets_are_normalised_like_the_report():
    task = make("regression", options={"length": 4000, "horizon": 4, "channels": 2})
    y = task.get_batch("train", torch.Generator().manual_seed(0))[1]
    big = torch.cat([task.get_batch("train", torch.Generator().manual_seed(i))[1] for i in range(20)])
    assert 0.7 < float(big.std()) < 1.2, float(big.std())
    assert y.shape == (4, 4, 2)


def test_curriculum_difficulty_ramps_linear_and_exponential():
    linear = CurriculumConfig(ramp="linear", preschool_steps=100, start=0.1)
    exponential = CurriculumConfig(ramp="exponential", preschool_steps=100, start=0.1)
    assert curriculum_difficulty(0, linear) == pytest.approx(0.1)
    assert curriculum_difficulty(50, linear) == pytest.approx(0.55)
    assert curriculum_difficulty(100, linear) == curriculum_difficulty(500, linear) == 1.0
    # The exponential ramp is the "aggressive" one: far ahead of the linear one early on.
    assert curriculum_difficulty(20, exponential) > curriculum_difficulty(20, linear) + 0.3
    assert curriculum_difficulty(3, CurriculumConfig()) is None


def test_discrete_diffusion_masks_more_as_the_curriculum_advances():
    task = make("discrete_diffusion", curriculum={"ramp": "linear", "preschool_steps": 100, "start": 0.1})
    model = task.build_model()
    batch = torch.cat([task.get_batch("train", torch.Generator().manual_seed(i)) for i in range(8)])
    torch.manual_seed(0)
    early = task.compute_loss(model, batch, 0).parts["mask_share"]
    torch.manual_seed(0)
    late = task.compute_loss(model, batch, 100).parts["mask_share"]
    assert task.difficulty(0) == pytest.approx(0.1) and task.difficulty(100) == 1.0
    assert late > 3 * early


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("text_diffusion", {"embed_dim": 0}, ["options.embed_dim", ">= 2"]),
        ("text_diffusion", {"tokenizer": "bpe"}, ["options.tokenizer", "char, word"]),
        ("regression", {"loss": "l3"}, ["options.loss", "mse, mae, huber"]),
        ("regression", {"celestial": True}, ["options.celestial", "allowed keys", "options.dead_branch"]),
        ("discrete_diffusion", {"sigma_max": -1}, ["options.sigma_max", "> 0"]),
    ],
)
def test_bad_options_are_refused_naming_key_and_allowed_values(name, options, words):
    with pytest.raises(ConfigError) as e:
        make(name, options=options)
    for word in words:
        assert word in str(e.value)


def test_regression_refuses_a_window_longer_than_the_validation_split():
    with pytest.raises(ConfigError, match="block_size 60"):
        make("regression", block_size=60, options={"length": 400, "horizon": 4})


def test_text_diffusion_init_from_copies_char_gpt_embeddings(tmp_path):
    from trainer.training.tasks.char_lm import CharLM

    cfg = from_dict({"task": "char_lm", **TINY, "block_size": 16})
    gpt = CharLM(cfg, torch.device("cpu")).build_model()
    path = tmp_path / "gpt.pt"
    torch.save({"model": gpt.state_dict(), "step": 0}, path)
    task = make("text_diffusion", init_from=str(path), options={"embed_dim": 8})
    emb = task.build_model().embed.weight.detach()
    wte = gpt.wte.weight.detach()
    # The copied embeddings keep the GPT's geometry: pairwise distances correlate strongly.
    d_new, d_old = torch.cdist(emb, emb).flatten(), torch.cdist(wte, wte).flatten()
    assert torch.corrcoef(torch.stack([d_new, d_old]))[0, 1] > 0.6


def test_the_registry_is_the_tasks_package_itself():
    """A task is a module of trainer/training/tasks named after its Task subclass: every preset's task
    is found that way, helper modules are not tasks, and an unknown name lists the real ones."""
    import yaml

    from trainer import PROJECT_ROOT
    from trainer.training.tasks import task_names

    names = task_names()
    presets = {yaml.safe_load(p.read_text()).get("task", "char_lm") for p in (PROJECT_ROOT / "configs").glob("*.yaml")}
    assert presets <= set(names) and {"base", "options", "denoiser"}.isdisjoint(names)
    assert all(get_task_class(n).name == n for n in names)
    with pytest.raises(ConfigError, match="task: 'denoiser' must be one of " + ", ".join(names)):
        get_task_class("denoiser")


def test_an_unknown_task_is_refused_before_anything_is_written(tmp_path, capsys):
    from trainer import cli

    for background in ([], ["--background"]):
        code = cli.main(["run", "--set", "task=nope", *background, "--runs-dir", str(tmp_path / "runs")])
        assert code == 2 and "task: 'nope' must be one of" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
