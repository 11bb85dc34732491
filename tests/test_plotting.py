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


def test_signed_map_uses_a_diverging_scale_centred_at_zero_and_clipped():
    heatmap = np.linspace(-1, 1, 100).reshape(10, 10)
    heatmap[0, 0] = -50.0  # one outlier must not set the scale
    ax = plotting.show_attribution(heatmap, image=np.full((10, 10, 3), 0.5), label="logit")
    drawn = ax.images[-1]
    low, high = drawn.get_clim()
    assert low == -high and 0.9 < high < 2, (low, high)
    assert drawn.get_cmap().name == "RdBu_r"
    colorbar = ax.figure.axes[-1]
    assert colorbar.get_ylabel() == "logit"
    assert len(ax.figure.axes) == 2  # the map and its colour bar


def test_unsigned_map_uses_a_sequential_scale_from_zero():
    heatmap = np.abs(np.random.default_rng(0).normal(size=(20, 20)))
    ax = plotting.show_attribution(heatmap, percentile=90)
    low, high = ax.images[-1].get_clim()
    assert low == 0 and high == pytest.approx(np.percentile(heatmap, 90))
    assert ax.images[-1].get_cmap().name == "magma_r"


def test_show_attribution_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="2-D map"):
        plotting.show_attribution(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="negative values"):
        plotting.show_attribution(-np.ones((4, 4)), signed=False)
    with pytest.raises(ValueError, match="H x W x 3"):
        plotting.show_attribution(np.ones((4, 4)), image=np.zeros((5, 5, 3)))
    with pytest.raises(ValueError, match="percentile"):
        plotting.show_attribution(np.ones((4, 4)), percentile=0)
