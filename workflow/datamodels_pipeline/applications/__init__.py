"""First applications of datamodels (paper section 4), each verified by retraining.

``counterfactuals``: predict the margin change from removing training examples, then retrain.
``brittleness``: the smallest removal set predicted to flip a prediction ("data support"), then retrain.
``similar_examples``: the training examples with the largest positive and negative weights.
``leakage``: (test target, training example) pairs ranked by weight, scored against planted near-duplicates.
``embeddings``: PCA and spectral clustering of the normalised weight vectors; removing one end of a
component, verified by retraining.
``retrain`` trains models on the full training set minus given removal sets.
"""
