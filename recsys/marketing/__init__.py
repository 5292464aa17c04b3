"""The marketing side of the interaction data: customer segments and purchase propensity.

Both read the same validated interactions (and catalogue) as the recommenders and use
scikit-learn's classic, explainable methods: RFM features clustered with K-means
(:mod:`recsys.marketing.segments`) and logistic regression for "who buys X in the next
days" (:mod:`recsys.marketing.propensity`). Nothing here knows Redis or the models.
"""
