"""Stage 4, separability: how separable the languages are, layer by layer, in checkpoints'
representations of parallel sentences.

``corpus`` reads parallel corpora from files, ``hidden_states`` mean-pools each layer,
``measures`` computes silhouette, probe accuracy and language-specific dimensions with
bootstrap intervals, ``analysis`` runs them over several checkpoints.
"""
