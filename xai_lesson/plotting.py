"""Plotting helpers shared by the episodes: heatmaps over images, coloured tokens,
and layer-by-token grids."""

import numpy as np


def _to_numpy(values, name):
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def show_heatmap_on_image(image, heatmap, ax=None, title=None, alpha=0.5, cmap="jet"):
    """Draw ``heatmap`` (H x W, any scale) over ``image`` (H x W x 3 in [0, 1]).

    The heatmap is rescaled to [0, 1] for display. Returns the axes.
    """
    image = _to_numpy(image, "image")
    heatmap = _to_numpy(heatmap, "heatmap")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3, got shape {image.shape}; "
                         "use ImageClassifier.unnormalise to turn a tensor into one.")
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap shape {heatmap.shape} must match the image's {image.shape[:2]}; "
                         "sum attributions over the colour channel first.")
    span = heatmap.max() - heatmap.min()
    scaled = (heatmap - heatmap.min()) / span if span > 0 else np.zeros_like(heatmap)
    ax = _axes(ax, (4, 4))
    ax.imshow(image)
    ax.imshow(scaled, cmap=cmap, alpha=alpha)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_attribution(heatmap, image=None, ax=None, title=None, signed=None, percentile=99.0,
                     alpha=0.65, colorbar=True, label=None):
    """Draw an attribution map so that people can read it, and return the axes.

    ``heatmap`` is an H x W map, for example from ``saliency.to_heatmap``.
    ``image`` (H x W x 3 in [0, 1], optional) is drawn underneath in grey, so the
    colours belong to the map alone.

    * Signed maps (``signed=True``; by default, any map with negative values)
      use a diverging colour map centred at zero: red for positive, blue for
      negative, white for zero, with the same scale on both sides.
    * Unsigned maps use a sequential colour map from zero (light) to the
      maximum (dark).
    * The scale ends at the ``percentile`` of the absolute values (99 by default),
      so that a few extreme pixels do not wash out the rest; larger values are
      drawn in the end colour, and the colour bar's pointed end says so.
    * ``colorbar=True`` adds a colour bar, labelled with ``label``.
    """
    import matplotlib.pyplot as plt

    heatmap = _to_numpy(heatmap, "heatmap")
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be a 2-D map (H x W), got shape {heatmap.shape}; "
                         "sum attributions over the colour channel first, e.g. with saliency.to_heatmap.")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}.")
    if signed is None:
        signed = bool((heatmap < 0).any())
    if not signed and (heatmap < 0).any():
        raise ValueError("signed=False, but the map has negative values: pass signed=True, "
                         "or take absolute values first (saliency.to_heatmap(a, absolute=True)).")
    limit = float(np.percentile(np.abs(heatmap), percentile))
    if limit == 0:
        limit = float(np.abs(heatmap).max()) or 1.0
    ax = _axes(ax, (4, 4))
    if image is not None:
        image = _to_numpy(image, "image")
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != heatmap.shape:
            raise ValueError(f"image must be H x W x 3 with the heatmap's H x W {heatmap.shape}, "
                             f"got shape {image.shape}.")
        ax.imshow(image.mean(2), cmap="gray", vmin=0, vmax=1)
    if signed:
        drawn = ax.imshow(heatmap, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=alpha if image is not None else 1.0)
    else:
        drawn = ax.imshow(heatmap, cmap="magma_r", vmin=0, vmax=limit, alpha=alpha if image is not None else 1.0)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if colorbar:
        clipped_high = bool((heatmap > limit).any())
        clipped_low = bool(signed and (heatmap < -limit).any())
        extend = {(True, True): "both", (True, False): "max", (False, True): "min"}.get((clipped_high, clipped_low),
                                                                                       "neither")
        bar = plt.colorbar(drawn, ax=ax, fraction=0.046, pad=0.02, extend=extend)
        bar.solids.set_alpha(1)
        if label:
            bar.set_label(label)
    return ax


def show_token_attributions(tokens, scores, ax=None, title=None, max_width=60):
    """Write ``tokens`` as coloured boxes: red for positive scores, blue for negative.

    Colours are scaled by the largest absolute score, so 0 is always white.
    Long texts wrap after about ``max_width`` characters. Returns the axes.
    """
    import matplotlib.pyplot as plt

    scores = _to_numpy(scores, "scores")
    if scores.ndim != 1 or len(scores) != len(tokens):
        raise ValueError(f"need one score per token: got {len(tokens)} tokens and scores of "
                         f"shape {scores.shape}.")
    limit = np.abs(scores).max() or 1.0
    colour = plt.get_cmap("bwr")
    lines, line, width = [], [], 0
    for token, score in zip(tokens, scores):
        if line and width + len(token) > max_width:
            lines.append(line)
            line, width = [], 0
        line.append((token, score))
        width += len(token) + 1
    lines.append(line)
    ax = _axes(ax, (min(12, 0.14 * max_width), 0.45 * len(lines) + 0.3))
    ax.set_xlim(0, max_width)
    ax.set_ylim(len(lines), 0)
    ax.set_axis_off()
    for row, entries in enumerate(lines):
        x = 0.0
        for token, score in entries:
            ax.text(x, row + 0.5, token, va="center", ha="left", family="monospace",
                    color="white" if abs(score) > 0.6 * limit else "black", bbox=dict(facecolor=colour(0.5 + 0.5 * score / limit), edgecolor="none", pad=1.5))
            x += len(token) + 1
    if title:
        ax.set_title(title, loc="left")
    return ax


def show_layer_token_heatmap(scores, tokens, ax=None, title=None, layer_labels=None,
                             highlight=(), cmap="Purples", colorbar_label=None):
    """Draw a (layers x tokens) grid of scores, tokens along x and layers along y.

    ``highlight`` is a sequence of token positions to mark with an asterisk,
    for example the subject's tokens in causal tracing. Returns the axes.
    """
    import matplotlib.pyplot as plt

    scores = _to_numpy(scores, "scores")
    if scores.ndim != 2 or scores.shape[1] != len(tokens):
        raise ValueError(f"scores must have shape (layers, {len(tokens)} tokens), got {scores.shape}.")
    ax = _axes(ax, (max(4, 0.35 * scores.shape[0]), max(3, 0.4 * len(tokens))))
    image = ax.imshow(scores.T, aspect="auto", cmap=cmap)
    labels = [f"{t}*" if i in set(highlight) else t for i, t in enumerate(tokens)]
    ax.set_yticks(range(len(tokens)), labels)
    layer_labels = layer_labels if layer_labels is not None else range(scores.shape[0])
    step = max(1, scores.shape[0] // 10)
    ax.set_xticks(range(0, scores.shape[0], step), list(layer_labels)[::step])
    ax.set_xlabel("layer")
    if title:
        ax.set_title(title)
    colorbar = plt.colorbar(image, ax=ax)
    if colorbar_label:
        colorbar.set_label(colorbar_label)
    return ax


def figure_dir():
    """Where notebooks save the episodes' figures.

    ``episodes/fig/`` of the lesson repository by default; outside the repository
    (on Colab, say), ``./fig/``. The environment variable ``XAI_LESSON_FIGURE_DIR``
    overrides both: the tests and ``make lesson`` point it at ``build/`` so that
    running the lesson does not rewrite the committed figures (one of them shows
    run times, which differ on every run).
    """
    import os
    from pathlib import Path

    repository = Path(__file__).resolve().parent.parent
    if os.environ.get("XAI_LESSON_FIGURE_DIR"):
        folder = Path(os.environ["XAI_LESSON_FIGURE_DIR"])
    elif (repository / "episodes").is_dir():
        folder = repository / "episodes" / "fig"
    else:
        folder = Path("fig")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_figure(fig, name):
    """Save ``fig`` as ``name`` (a .png file name) for the episode, and return the path."""
    if not name.endswith(".png") or "/" in name:
        raise ValueError(f"name must be a plain file name ending in .png, got {name!r}.")
    path = figure_dir() / name
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    return path
