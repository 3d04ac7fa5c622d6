"""``export``: how much smaller the export (``training.export``) makes an unstructured-sparse model.

Each model is built at its seed's initialisation and pruned by global magnitude over its conv and
linear weights (``pruning.masks.global_magnitude_masks``) to each sparsity; its state_dict is then
exported, the round trip checked, and the file sizes of the export and of the dense state_dict
(``torch.save``) compared. The encoding depends only on where the zeros are, so initialisation
weights give the same sizes a trained model of that sparsity would.
"""

from __future__ import annotations

from typing import Any

import torch

from models import build_model
from pruning.accounting import prunable_layers
from pruning.masks import global_magnitude_masks
from training.export import export_model


def bench_export(models: tuple[str, ...], sparsities: tuple[float, ...], seed: int = 0) -> dict[str, Any]:
    rows = []
    for name in models:
        for sparsity in sparsities:
            torch.manual_seed(seed)
            model = build_model(name, 10)
            weights = {n: m.weight for n, m in prunable_layers(model).items()}
            with torch.no_grad():
                for n, keep in global_magnitude_masks(weights, sparsity).items():
                    weights[n].mul_(keep)
            report = export_model(model)
            rows.append({"model": name, "sparsity": sparsity, **report})
    return {"benchmark": "export", "seed": seed, "results": rows}


def format_export_table(result: dict[str, Any]) -> str:
    lines = [f"{'model':<10} {'sparsity':>8} {'dense file MB':>14} {'export MB':>10} {'smaller by':>11}"]
    for row in result["results"]:
        lines.append(
            f"{row['model']:<10} {100 * row['sparsity']:>7.0f}% {row['file_bytes_dense'] / 1e6:>14.2f} "
            f"{row['file_bytes_export'] / 1e6:>10.2f} {row['file_ratio']:>10.1f}x"
        )
    return "\n".join(lines)
