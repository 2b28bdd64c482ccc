"""The model wing: loading a model, scoring a dataset with it, and what is learned from the scores."""
