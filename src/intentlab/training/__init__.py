"""Training: the one loop every encoder method shares, its checkpoints, the TF-IDF baseline, and the
drivers that run many trainings (compare matrices, Optuna sweeps), plus what each run measures."""
