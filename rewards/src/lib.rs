//! Pure scoring of an agent's final answer against the dataset's ground truth.
