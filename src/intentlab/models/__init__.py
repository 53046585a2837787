"""Models: the method table (what each fine-tuning method trains, saves and shows), the encoder +
pooled classifier, and the self-contained `<run>/model/` folder."""
