"""Checks for episode 03's code-along exercises: evaluating saliency maps against a known ground truth."""

import numpy as np
import torch

from .harness import Returns, Wrong, close, exercise


def patch_scoring_example():
    """Small signed attributions (5, 3, 5, 7) and their masks (5, 5, 7), built so that the usual
    slips in mass_inside and pointing_game each give a different answer. Image 4's map is all zeros."""
    generator = torch.Generator().manual_seed(3)
    maps = 0.3 * torch.randn(5, 3, 5, 7, generator=generator)        # non-square: rows and columns differ
    masks = torch.zeros(5, 5, 7, dtype=torch.bool)
    for i, (top, left) in enumerate([(0, 0), (1, 3), (2, 1), (3, 4), (1, 1)]):
        masks[i, top:top + 2, left:left + 3] = True                  # a 2 x 3 patch
    maps[0, :, 0, 1] = torch.tensor([2.0, 1.5, 1.0])                 # 0: a positive peak inside
    maps[1, :, 4, 0] = torch.tensor([2.0, 2.0, 1.0])                 # 1: the peak is outside ...
    maps[1, :, 1, 4] = torch.tensor([3.0, 0.0, 0.0])                 #    ... one strong colour inside
    maps[2, :, 3, 2] = torch.tensor([-3.0, -2.0, -2.0])              # 2: a negative peak inside ...
    maps[2, :, 0, 6] = torch.tensor([1.5, 1.0, 1.0])                 #    ... and a smaller positive one outside
    maps[3, :, 0, 0] = torch.tensor([4.0, -4.0, 0.5])                # 3: colours that cancel, outside ...
    maps[3, :, 3, 5] = torch.tensor([1.5, 1.5, 1.5])                 #    ... and a peak of their sum inside
    maps[3, :, 2, 2] = torch.tensor([3.5, 0.0, 0.0])                 #    ... and one strong colour, outside
    maps[4] = 0.0
    return maps, masks


def _magnitude(maps):
    return maps.abs().sum(dim=1)


def _shares(heat, masks, total=None, positive_only=False):
    """Share of ``heat`` inside ``masks`` per map; 0 where the total is 0 (or not positive)."""
    heat = heat.to(torch.float64)
    inside = (heat * masks).flatten(1).sum(1)
    total = heat.flatten(1).sum(1) if total is None else total
    keep = total > 0 if positive_only else total != 0
    return np.asarray(torch.where(keep, inside / torch.where(keep, total, 1.0), 0.0))


def _reference_mass_inside(maps, masks):
    from xai_lesson.synthetic import mass_inside
    return mass_inside(maps, masks)


def _reference_pointing_game(maps, masks):
    from xai_lesson.synthetic import pointing_game
    return pointing_game(maps, masks)


def _fresh_maps(seed):
    """Random signed attributions (N, 3, H, W) and random masks (N, H, W), of another size for each seed."""
    generator = torch.Generator().manual_seed(seed)
    n, height, width = 5 + seed, 3 + seed, 7 - seed
    return (torch.randn(n, 3, height, width, generator=generator),
            torch.rand(n, height, width, generator=generator) < 0.4)


SHARES = Returns("a NumPy array", lambda v: isinstance(v, (np.ndarray, np.generic)),
                 "return a NumPy array, which the score table indexes: end with .numpy() if you computed it "
                 "with torch, or use np.array(...) on a list")


def _numpy_result(value, n):
    shape = np.shape(value)
    if shape == ():
        raise Wrong(f"it returns one number for {n} maps",
                    "compute one score per map: flatten each map with .flatten(1) and reduce over dim 1")
    if shape != (n,):
        raise Wrong(f"for {n} maps it returns shape {shape}, not one score per map ({n},)",
                    "sum the absolute values over the colour channels (dim 1), flatten each map with "
                    ".flatten(1) and reduce over dim 1")
    return np.asarray(value, dtype=np.float64)


@exercise("3.1", "mass_inside", _reference_mass_inside,
          "One share per map: its absolute attribution inside the patch over its total, 0 for an empty map.",
          returns=SHARES, fresh=_fresh_maps)
def check_mass_inside(learner):
    maps, masks = patch_scoring_example()
    got = _numpy_result(learner(maps.clone(), masks.clone()), len(maps))
    want = np.asarray(_reference_mass_inside(maps, masks), dtype=np.float64)
    live = slice(0, 4)                                               # the maps that are not all zeros
    if close(got[live], want[live]):
        if not np.isfinite(got[4]) or got[4] != 0:
            raise Wrong(f"a map of zeros scores {got[4]}, not 0",
                        "return 0 where the total is 0: torch.where(total > 0, inside / total, 0.0)")
        return
    heat = _magnitude(maps)
    signed = maps.sum(dim=1)
    mistakes = [
        *[(_shares(signed, masks, positive_only=positive), "it uses the signed map, so negative attribution "
           "cancels positive", "take absolute values, maps.abs(), before you sum: a large negative attribution "
           "is evidence too") for positive in (False, True)],
        (_shares(signed.abs(), masks), "it adds the colour channels before taking absolute values, so they cancel",
         "take the absolute value of each channel first, then sum over the channels: maps.abs().sum(dim=1)"),
        (1 - want, "it gives the share outside the patch",
         "`masks` is True inside the patch: multiply by masks, not by ~masks"),
        (_shares(heat, masks, total=torch.ones(len(maps), dtype=torch.float64)),
         "it returns the attribution inside the patch, not its share", "divide by each map's total absolute attribution"),
        (_shares(heat, masks, total=heat.to(torch.float64).sum().expand(len(maps))),
         "it divides by the total of all the maps together",
         "divide each map by its own total, magnitude.flatten(1).sum(dim=1)"),
        (want * masks.shape[1] * masks.shape[2] / masks.flatten(1).sum(1).double().numpy(),
         "it divides the mean inside the patch by the mean of the whole map", "divide the sums, not the means"),
    ]
    for candidate, what, hint in mistakes:
        if close(got[live], np.asarray(candidate)[live]):
            raise Wrong(what, hint)
    raise Wrong("the shares differ from the reference",
                "magnitude = maps.abs().sum(dim=1); (magnitude * masks).flatten(1).sum(1) / magnitude.flatten(1).sum(1)")


def tied_peaks_example():
    """The crafted maps of ``patch_scoring_example`` plus one map whose peak is a 2 x 2 block of tied pixels,
    as an occlusion map has: its top-left pixel, the one ``argmax`` takes, is outside the mask, and two of
    the four tied pixels are inside. Image 4's map is all zeros, so every pixel ties."""
    maps, masks = patch_scoring_example()
    block = 0.3 * torch.randn(1, 3, 5, 7, generator=torch.Generator().manual_seed(4))
    block[0, :, 1:3, 1:3] = 2.0                                      # a tied 2 x 2 peak, like one occlusion block
    block_mask = torch.zeros(1, 5, 7, dtype=torch.bool)
    block_mask[0, 1:3, 2:5] = True                                   # covers the block's right column only
    return torch.cat([maps, block]), torch.cat([masks, block_mask])


def _tied_shares(heat, masks):
    """Share of each map's tied peak pixels inside its mask."""
    flat, region = heat.flatten(1), masks.flatten(1)
    peaks = flat == flat.amax(dim=1, keepdim=True)
    return ((peaks & region).sum(1).double() / peaks.sum(1).double()).numpy()


def _first_peak(heat, masks):
    """Whether the first of the tied peak pixels (what argmax returns) is inside the mask."""
    peak = heat.flatten(1).argmax(dim=1)
    return masks.flatten(1)[torch.arange(len(peak)), peak].double().numpy()


def _any_peak(heat, masks):
    """Whether any of the tied peak pixels is inside the mask."""
    flat = heat.flatten(1)
    return ((flat == flat.amax(dim=1, keepdim=True)) & masks.flatten(1)).any(1).double().numpy()


@exercise("3.2", "pointing_game", _reference_pointing_game,
          "One score per map: the share of its tied peak pixels that lie inside the patch (1 or 0 for a unique peak).",
          returns=SHARES, fresh=_fresh_maps)
def check_pointing_game(learner):
    maps, masks = tied_peaks_example()
    result = learner(maps.clone(), masks.clone())
    if np.shape(result) == (masks.shape[1] * masks.shape[2],):
        raise Wrong(f"it returns {masks.shape[1] * masks.shape[2]} answers, one per pixel: the peak runs "
                    "over the maps (dim 0)", "flatten each map with .flatten(1) and reduce over dim 1")
    got = _numpy_result(result, len(maps))
    want = np.asarray(_reference_pointing_game(maps, masks), dtype=np.float64)
    if not (np.all(np.isfinite(got)) and got.min() >= 0 and got.max() <= 1):
        raise Wrong("it returns numbers outside 0 to 1, maybe the peaks' positions",
                    "look the peak pixels up in their mask: (peaks & masks.flatten(1)).sum(dim=1)")
    if close(got, want):
        if not (np.any(want == 1) and np.any(want == 0) and np.any((want > 0) & (want < 1))):
            raise AssertionError("the check's example needs hits, misses and a shared tie")
        return

    signed = maps.sum(dim=1)
    everywhere = _magnitude(maps).flatten().argmax() % (masks.shape[1] * masks.shape[2])
    heats = [
        (_magnitude(maps), None, None),
        (signed, "it looks for the largest signed value, so it misses a strong negative peak",
         "take absolute values, maps.abs(), before you look for the peak: a large negative attribution is a peak too"),
        (signed.abs(), "it adds the colour channels before taking absolute values, so they cancel",
         "take the absolute value of each channel first, then sum over the channels: maps.abs().sum(dim=1)"),
        (maps.abs().amax(dim=1), "it takes the largest channel at each pixel, not the sum over the channels",
         "sum the absolute values over the channels: maps.abs().sum(dim=1)"),
    ]
    tie_what = ("it picks one of the tied peak pixels (argmax takes the first; a random pick is no better), so a "
                "tied peak counts as a whole hit or a whole miss instead of the share of its pixels inside")
    tie_hint = ("mark every pixel equal to the map's largest value, peaks = magnitude == magnitude.amax(dim=1, "
                "keepdim=True), and return the share of them inside the mask")
    mistakes = [
        (1 - want, "it gives the share of the tied peak pixels outside the patch",
         "`masks` is True inside the patch: count the peak pixels where the mask is True"),
        (masks.flatten(1)[:, everywhere].double().numpy(),
         "it takes one peak for the whole batch", "find one peak per map: reduce over dim 1 of magnitude.flatten(1)"),
        (_first_peak(_magnitude(maps), masks), tie_what, tie_hint),
        (_any_peak(_magnitude(maps), masks), "it counts a hit when any of the tied peak pixels is inside the patch",
         "divide the number of tied peak pixels inside by the number of tied peak pixels"),
    ]
    for heat, what, hint in heats[1:]:
        mistakes += [(_tied_shares(heat, masks), what, hint), (_first_peak(heat, masks), what, hint)]
    for candidate, what, hint in mistakes:
        if close(got, candidate):
            raise Wrong(what, hint)
    tied = (want > 0) & (want < 1)
    if np.all(np.isin(got[tied], (0.0, 1.0))) and close(got[~tied], want[~tied]):
        raise Wrong("it breaks the tie by picking one of the tied peak pixels (at random, perhaps): one random draw "
                    "scores a tied peak as a whole hit or a whole miss, while the score is its average over the draws",
                    "the average of a random pick is the share of the tied peak pixels inside: " + tie_hint)
    raise Wrong("the scores differ from the reference",
                "magnitude = maps.abs().sum(dim=1).flatten(1); peaks = magnitude == magnitude.amax(dim=1, keepdim=True); "
                "(peaks & masks.flatten(1)).sum(dim=1) / peaks.sum(dim=1)")
