"""The QA overlay reads for a radiologist: text size, malignant vs benign styles, letters, mm, SUV bar."""

import matplotlib
import numpy as np
from matplotlib.text import Text

from cache.grid import Grid
from cache.stations import station
from evaluate.figures import FONT_PT, _matrix_panel, qa_overlay


def overlay():
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[1:4, 5:10, 5:10] = station("4R").code
    labels[2:5, 12:16, 12:16] = station("7").code
    status = np.zeros(17, dtype=np.int8)
    status[station("7").index] = 1
    probability = np.full(17, 0.2)
    probability[station("7").index] = 0.9
    grid = Grid(labels.shape, (1.0, 1.0, 2.0), (0.0, 0.0, 50.0))
    return qa_overlay(np.zeros(labels.shape, np.int16), np.ones(labels.shape), labels, status, "p0", grid,
                      probability)


def test_every_text_is_at_least_9_pt_and_backend_untouched():
    before = matplotlib.get_backend()
    fig = overlay()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert texts and min(t.get_fontsize() for t in texts) >= FONT_PT
    assert matplotlib.get_backend() == before


def test_rows_letters_positions_legend_and_suv_bar():
    fig = overlay()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sum(t.startswith("CT axial") for t in titles) and sum(t.startswith("PET coronal") for t in titles)
    assert "CT axial, z 54.0 mm" in titles  # slice 2 (the fullest of slices 1-2) of a 2 mm grid from z 50 mm
    words = {t.get_text() for t in fig.findobj(Text)}
    assert {"R", "L", "A", "P", "S", "I"} <= words and {"4R", "7"} <= words
    legend = fig.legends[0]
    entries = {t.get_text(): line for t, line in zip(legend.get_texts(), legend.get_lines(), strict=True)}
    malignant, benign = entries["7 0.90"], entries["4R 0.20"]
    assert malignant.get_color() != benign.get_color() and malignant.get_linestyle() != benign.get_linestyle()
    assert sum(ax.get_ylabel() == "SUV" for ax in fig.axes) == 2  # one colour bar per PET row


def test_confusion_cells_show_counts_and_row_percentages():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    _matrix_panel(ax, np.array([[3, 1], [0, 0]]), ["benign", "malig."], "t")
    cells = [t.get_text() for t in ax.texts]
    assert cells == ["3\n75%", "1\n25%", "0\n0%", "0\n0%"]
