"""reporting.figures: what every figure's panels and caption must satisfy."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from reporting import figures  # noqa: E402


def two_panels(first: str, second: str) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, 2)
    axes[0].set_title(first)
    axes[1].set_title(second)
    return fig, list(axes)


def test_finish_refuses_two_panels_with_the_same_title(tmp_path: Path) -> None:
    fig, axes = two_panels("ResNet-20, CIFAR-10 subset", "ResNet-20, CIFAR-10 subset")
    with pytest.raises(ValueError, match="fig_x: two or more panels share the title 'ResNet-20, CIFAR-10 subset'"):
        figures.finish(fig, axes, "what", pd.DataFrame(), tmp_path, "fig_x")
    assert not list(tmp_path.iterdir())  # nothing written
    plt.close(fig)


def test_finish_writes_panels_that_say_what_differs(tmp_path: Path) -> None:
    fig, axes = two_panels("ResNet-20: by FLOPs", "ResNet-20: by parameters")
    paths = figures.finish(fig, axes, "what", pd.DataFrame(), tmp_path, "fig_x")
    assert sorted(p.name for p in paths) == ["fig_x.pdf", "fig_x.png"] and all(p.stat().st_size for p in paths)
    plt.close(fig)


def test_a_band_of_one_epoch_is_drawn_with_a_marker() -> None:
    import matplotlib.pyplot as plt
    import pandas as pd

    from reporting import figures

    fig, ax = plt.subplots()
    figures.band(ax, pd.Series([1]), pd.Series([0.2]), pd.Series([0.0]), "one epoch", "black")
    figures.band(ax, pd.Series(range(1, 11)), pd.Series([0.2] * 10), pd.Series([0.0] * 10), "ten", "red", ls="--")
    one, ten = ax.get_lines()
    assert one.get_marker() == "o" and ten.get_marker() in (None, "None", "") and ten.get_linestyle() == "--"
    plt.close(fig)
