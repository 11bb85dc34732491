"""Plotting helpers: they draw, and they refuse inputs that do not fit."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from xai_lesson import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_heatmap_on_image_draws_two_layers():
    ax = plotting.show_heatmap_on_image(np.zeros((8, 8, 3)), np.arange(64.0).reshape(8, 8), title="t")
    assert len(ax.images) == 2 and ax.get_title() == "t"


def test_heatmap_must_match_the_image():
    with pytest.raises(ValueError, match="must match the image"):
        plotting.show_heatmap_on_image(np.zeros((8, 8, 3)), np.zeros((4, 4)))


def test_heatmap_rejects_nan():
    heatmap = np.zeros((8, 8))
    heatmap[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plotting.show_heatmap_on_image(np.zeros((8, 8, 3)), heatmap)


def test_token_attributions_write_every_token():
    tokens = ["not", "a", "good", "film"] * 10
    ax = plotting.show_token_attributions(tokens, np.linspace(-1, 1, len(tokens)), max_width=30)
    assert [t.get_text() for t in ax.texts] == tokens


def test_token_attributions_need_one_score_per_token():
    with pytest.raises(ValueError, match="one score per token"):
        plotting.show_token_attributions(["a", "b"], [1.0])


def test_layer_token_heatmap_marks_highlighted_tokens():
    ax = plotting.show_layer_token_heatmap(np.zeros((30, 3)), ["The", "Eiffel", "Tower"], highlight=[1, 2])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["The", "Eiffel*", "Tower*"]
    with pytest.raises(ValueError, match=r"shape \(layers, 3 tokens\)"):
        plotting.show_layer_token_heatmap(np.zeros((3, 30)), ["a", "b", "c"])


def test_save_figure_wants_a_png_name():
    fig = plt.figure()
    with pytest.raises(ValueError, match="ending in .png"):
        plotting.save_figure(fig, "../escape.png")


def test_figures_go_where_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_LESSON_FIGURE_DIR", str(tmp_path / "figs"))
    fig, _ = plt.subplots()
    assert plotting.save_figure(fig, "x.png") == tmp_path / "figs" / "x.png"
    assert (tmp_path / "figs" / "x.png").stat().st_size > 0


def test_figures_default_to_the_episodes_folder(monkeypatch):
    monkeypatch.delenv("XAI_LESSON_FIGURE_DIR", raising=False)
    assert plotting.figure_dir().parts[-2:] == ("episodes", "fig")
