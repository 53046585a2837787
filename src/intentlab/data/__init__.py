"""Data: find, read and validate datasets, split them, and turn texts into padded batches.

`loading` reads Banking77 or your CSV/JSONL into a `Dataset` (train/validation/test, label list,
provenance); `batching` tokenizes once and builds length-bucketed (training) or length-sorted
(inference) batches.
"""

from intentlab.data.loading import (
    Dataset,
    Split,
    dataset_for,
    describe,
    find_banking77,
    load_dataset,
    print_warnings,
    read_records,
    read_split,
    stratified_split,
)

__all__ = [
    "Dataset",
    "Split",
    "dataset_for",
    "describe",
    "find_banking77",
    "load_dataset",
    "print_warnings",
    "read_records",
    "read_split",
    "stratified_split",
]
