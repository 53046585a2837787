"""intentlab: train, compare and serve intent classifiers on BERT-family encoders.

Importing the package loads no model and touches no network; see `intentlab.cli` for the commands.
"""

__version__ = "0.1.0"
