"""The image parts (``vqa/model/grid.py``): cells with their position, boxes read from the grid."""

from __future__ import annotations

import pytest
import torch
from conftest import model_spec

from vqa.model import BoxEncoder, relative_cells
from vqa.model.grid import GridCells


def test_relative_cells_say_where_each_cell_lies_from_the_box() -> None:
    rel = relative_cells(torch.tensor([[[0.0, 0.0, 0.34, 0.34]]]), 3, 3)  # the top-left cell of a 3x3 grid
    assert rel.shape == (1, 1, 9, 3)
    dx, dy, inside = rel[0, 0].unbind(-1)
    assert inside.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert dx[1] > 0 and dy[1] == pytest.approx(0, abs=0.02)  # the cell right of it: same row, to the right
    assert dy[3] > 0 and dx[3] == pytest.approx(0, abs=0.02)  # the cell below it


@pytest.mark.parametrize("cell_context", [0, 3])
def test_identical_cells_differ_by_their_position(cell_context: int) -> None:
    torch.manual_seed(0)
    grid = GridCells(model_spec(20, (16, 3, 4), attention_dim=16, cell_context=cell_context)).eval()
    cells = grid(torch.ones(2, 16, 3, 4).half())
    assert cells.shape == (2, 12, 16) and cells.dtype == torch.float32
    assert not torch.allclose(cells[0, 0], cells[0, 5]), "the same features at two places are two cells"


def test_a_box_reads_what_the_grid_holds_inside_it_unless_blind() -> None:
    torch.manual_seed(0)
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]])  # [B=1, K=2, 4]
    cells, other = torch.randn(1, 12, 8), torch.randn(1, 12, 8)
    seeing, blind = BoxEncoder(8, 6, (3, 4)).eval(), BoxEncoder(None, 6, (3, 4)).eval()
    assert seeing(boxes, cells, None).shape == (1, 2, 6)
    assert not torch.allclose(seeing(boxes, cells, None), seeing(boxes, other, None))
    assert torch.equal(blind(boxes, cells, None), blind(boxes, None, None))
